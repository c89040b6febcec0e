// How per-position label scores become a label sequence: each position's likeliest label on its own
// (argmax, HF's pipeline), or the likeliest sequence that is valid IOB2 (viterbi): an I-X only right
// after B-X or I-X, never first. The constrained decode is what CRF taggers (AllenNLP's
// allowed_transitions) do at inference; here the transitions are the constraints alone (no learnt
// scores), so it uses nothing but the model's own probabilities. It keeps a segment whole where
// argmax flips a few positions inside it to a similar label (I-es I-it I-es): switching there would
// need a B-, which the model rarely gives inside a segment. viterbi_separated also keeps entities apart: a
// B-X only first or right after an O, for labellings where an O always lies between two entities (the
// spaces that join langseg's sentences); a B- the model gives inside a segment then cannot split it.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace perceiver {

enum class TagDecode { argmax, viterbi, viterbi_separated };
TagDecode parse_tag_decode(const std::string& name);  // throws std::invalid_argument naming the known ones
const char* to_string(TagDecode decode);
// Every decoding's name, in the enum's order (for option tables and help).
std::vector<std::string> tag_decode_names();
// One line per decoding: "argmax (each byte's likeliest label), viterbi (...) or viterbi_separated (...)".
std::string tag_decode_help();

// A label sequence from per-position log-probabilities (N, num_labels), labels named by id2label (an id
// it lacks, or a label without a B-/I- prefix such as "O", is unconstrained). argmax: numpy's (ties go
// to the lower id, NaN counts as the largest). viterbi: the sequence of highest total log-probability
// among the valid IOB2 sequences (ties: the lower ids, earliest first); equal to argmax wherever argmax
// is itself valid. viterbi_separated: the same among the valid IOB2 sequences whose every B- label is
// first or follows a label without a B-/I- prefix (O). Throws std::invalid_argument unless log_probs is 2-D.
std::vector<int64_t> decode_tags(const torch::Tensor& log_probs, const std::map<int64_t, std::string>& id2label,
                                 TagDecode decode);

}  // namespace perceiver
