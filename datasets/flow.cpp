#include "datasets/flow.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <stdexcept>

#include "datasets/common.h"
#include "datasets/images.h"
#include "datasets/sources.h"

namespace perceiver::datasets {
namespace fs = std::filesystem;

namespace {
constexpr float kFloMagic = 202021.25f;  // "PIEH" read as a little-endian float
constexpr int64_t kFloMaxSide = 100000;  // the Middlebury reference code's sanity bound
}  // namespace

torch::Tensor parse_flo(const std::string& bytes, const std::string& name) {
  if (bytes.size() < 12) throw std::runtime_error(name + ": .flo shorter than its 12-byte header");
  float magic = 0;
  int32_t w = 0, h = 0;
  std::memcpy(&magic, bytes.data(), 4);
  std::memcpy(&w, bytes.data() + 4, 4);
  std::memcpy(&h, bytes.data() + 8, 4);
  if (magic != kFloMagic)
    throw std::runtime_error(name + ": bad .flo magic " + std::to_string(magic) + " (expected 202021.25, 'PIEH')");
  if (w <= 0 || h <= 0 || w >= kFloMaxSide || h >= kFloMaxSide)
    throw std::runtime_error(name + ": implausible .flo size " + std::to_string(w) + "x" + std::to_string(h));
  const uint64_t expected = 12 + uint64_t{8} * static_cast<uint64_t>(w) * static_cast<uint64_t>(h);
  if (bytes.size() != expected)
    throw std::runtime_error(name + ": .flo of " + std::to_string(w) + "x" + std::to_string(h) + " needs " +
                             std::to_string(expected) + " bytes, file has " + std::to_string(bytes.size()) +
                             (bytes.size() < expected ? " (truncated)" : " (trailing bytes)"));
  auto flow = torch::empty({h, w, 2}, torch::kFloat);
  std::memcpy(flow.data_ptr<float>(), bytes.data() + 12, expected - 12);  // little-endian host assumed (x86/ARM)
  return flow;
}

torch::Tensor read_flo(const fs::path& path) { return parse_flo(read_file_bytes(path), "'" + path.string() + "'"); }

void write_flo(const fs::path& path, const torch::Tensor& flow) {
  if (flow.dim() != 3 || flow.size(2) != 2)
    throw std::invalid_argument("write_flo: flow must be (H, W, 2), got " + c10::str(flow.sizes()));
  const auto f = flow.to(torch::kFloat).contiguous();
  const int32_t h = static_cast<int32_t>(f.size(0)), w = static_cast<int32_t>(f.size(1));
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(&kFloMagic), 4);
  out.write(reinterpret_cast<const char*>(&w), 4);
  out.write(reinterpret_cast<const char*>(&h), 4);
  out.write(reinterpret_cast<const char*>(f.data_ptr<float>()), static_cast<std::streamsize>(f.numel() * 4));
  if (!out) throw std::runtime_error("cannot write .flo file '" + path.string() + "'");
}

// ---- dataset layouts ----
namespace {

std::vector<fs::path> sorted_files(const fs::path& dir, const std::string& suffix) {
  std::vector<fs::path> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::vector<FlowFiles> discover_sintel(const fs::path& root, const std::string& pass, const std::string& split) {
  const fs::path image_root = root / split / pass;
  std::error_code ec;
  if (!fs::is_directory(image_root, ec))
    throw std::runtime_error("Sintel: '" + image_root.string() + "' not found (expected <root>/" + split + "/" + pass +
                             "/<scene>/frame_XXXX.png)");
  std::vector<fs::path> scenes;
  for (const auto& e : fs::directory_iterator(image_root))
    if (e.is_directory()) scenes.push_back(e.path());
  std::sort(scenes.begin(), scenes.end());
  std::vector<FlowFiles> out;
  for (const auto& scene : scenes) {
    const auto frames = sorted_files(scene, ".png");
    const fs::path flow_dir = root / split / "flow" / scene.filename();
    for (size_t i = 0; i + 1 < frames.size(); ++i) {
      FlowFiles f;
      f.frame1 = frames[i];
      f.frame2 = frames[i + 1];
      f.group = scene.filename().string();
      const fs::path flo = flow_dir / (frames[i].stem().string() + ".flo");
      if (fs::exists(flo, ec)) {
        f.flow = flo;
      } else if (split == "training") {
        throw std::runtime_error("Sintel: ground truth '" + flo.string() + "' missing for frame '" + frames[i].string() + "'");
      }
      out.push_back(std::move(f));
    }
  }
  return out;
}

std::vector<FlowFiles> discover_flying_chairs(const fs::path& root, const fs::path& split_file, int keep) {
  std::error_code ec;
  const fs::path dir = fs::is_directory(root / "data", ec) ? root / "data" : root;
  const auto flows = sorted_files(dir, "_flow.flo");
  if (flows.empty()) throw std::runtime_error("FlyingChairs: no XXXXX_flow.flo files in '" + dir.string() + "'");
  std::vector<FlowFiles> all;
  for (const auto& flo : flows) {
    const std::string name = flo.filename().string();
    const std::string id = name.substr(0, name.size() - std::string("_flow.flo").size());
    FlowFiles f{dir / (id + "_img1.ppm"), dir / (id + "_img2.ppm"), flo, ""};
    if (!fs::exists(f.frame1, ec) || !fs::exists(f.frame2, ec))
      throw std::runtime_error("FlyingChairs: images for '" + flo.string() + "' missing (expected " + id +
                               "_img1.ppm and " + id + "_img2.ppm)");
    all.push_back(std::move(f));
  }
  if (split_file.empty()) return all;
  std::ifstream in(split_file);
  if (!in) throw std::runtime_error("FlyingChairs: cannot open split file '" + split_file.string() + "'");
  std::vector<int> codes;
  int code = 0;
  while (in >> code) codes.push_back(code);
  if (codes.size() != all.size())
    throw std::runtime_error("FlyingChairs: split file '" + split_file.string() + "' has " + std::to_string(codes.size()) +
                             " entries for " + std::to_string(all.size()) + " pairs");
  std::vector<FlowFiles> out;
  for (size_t i = 0; i < all.size(); ++i)
    if (codes[i] == keep) out.push_back(all[i]);
  return out;
}

FlowSample load_flow_sample(const FlowFiles& files) {
  FlowSample s;
  s.frame1 = read_image(files.frame1).to(torch::kFloat);
  s.frame2 = read_image(files.frame2).to(torch::kFloat);
  if (s.frame1.sizes() != s.frame2.sizes())
    throw std::runtime_error("flow pair '" + files.frame1.string() + "' / '" + files.frame2.string() +
                             "': frame sizes differ");
  if (!files.flow.empty()) {
    s.flow = read_flo(files.flow);
    if (s.flow.size(0) != s.frame1.size(0) || s.flow.size(1) != s.frame1.size(1))
      throw std::runtime_error("'" + files.flow.string() + "': flow " + c10::str(s.flow.sizes()) +
                               " does not match frame " + c10::str(s.frame1.sizes()));
  }
  return s;
}

// ---- synthetic ----
namespace {

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  double uniform(double lo, double hi) { return lo + (hi - lo) * static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

 private:
  std::mt19937_64 engine_;
};

// A smooth bounded RGB texture, evaluated at arbitrary real coordinates.
struct Texture {
  struct Wave {
    double fx, fy, phase;
    double amp[3];
  };
  struct Blob {
    double cx, cy, inv_two_sigma2;
    double amp[3];
  };
  std::vector<Wave> waves;
  std::vector<Blob> blobs;

  Texture(Rng& rng, int n_waves, int n_blobs, double h, double w) {
    constexpr double kPi = 3.14159265358979323846;
    for (int k = 0; k < n_waves; ++k) {
      const double wavelength = rng.uniform(8.0, 40.0), angle = rng.uniform(0, 2 * kPi);
      Wave wv{std::cos(angle) * 2 * kPi / wavelength, std::sin(angle) * 2 * kPi / wavelength, rng.uniform(0, 2 * kPi), {}};
      for (double& a : wv.amp) a = rng.uniform(-1, 1) / std::sqrt(static_cast<double>(n_waves));
      waves.push_back(wv);
    }
    for (int k = 0; k < n_blobs; ++k) {
      const double sigma = rng.uniform(3.0, 10.0);
      Blob b{rng.uniform(-10, w + 10), rng.uniform(-10, h + 10), 1.0 / (2 * sigma * sigma), {}};
      for (double& a : b.amp) a = rng.uniform(-1.5, 1.5);
      blobs.push_back(b);
    }
  }

  // x, y: (H, W) float64 -> (H, W, 3) float32 in (0, 255).
  torch::Tensor render(const torch::Tensor& x, const torch::Tensor& y) const {
    std::vector<torch::Tensor> channels;
    for (int c = 0; c < 3; ++c) channels.push_back(torch::zeros_like(x));
    for (const auto& wv : waves) {
      const auto s = torch::sin(x * wv.fx + y * wv.fy + wv.phase);
      for (int c = 0; c < 3; ++c) channels[c].add_(s * wv.amp[c]);
    }
    for (const auto& b : blobs) {
      const auto g = torch::exp(-((x - b.cx).square() + (y - b.cy).square()) * b.inv_two_sigma2);
      for (int c = 0; c < 3; ++c) channels[c].add_(g * b.amp[c]);
    }
    // tanh keeps values inside (0, 255) smoothly, so no clipping breaks the exact correspondence.
    return (torch::tanh(torch::stack(channels, -1)) * 127.5 + 127.5).to(torch::kFloat);
  }
};

}  // namespace

FlowSample synthetic_flow_sample(const SyntheticFlowOptions& options, uint64_t index) {
  if (options.height < 2 || options.width < 2) throw std::invalid_argument("synthetic flow: image must be at least 2x2");
  constexpr double kPi = 3.14159265358979323846;
  Rng rng(stable_hash(std::to_string(index), options.seed));
  const double h = static_cast<double>(options.height), w = static_cast<double>(options.width);
  const Texture texture(rng, options.waves, options.blobs, h, w);

  const auto opts = torch::TensorOptions().dtype(torch::kDouble);
  const auto ys = torch::arange(options.height, opts).view({-1, 1}).expand({options.height, options.width});
  const auto xs = torch::arange(options.width, opts).view({1, -1}).expand({options.height, options.width});

  // Smooth flow: translation + affine about the centre + a few low-frequency sinusoids per component.
  const double cx = (w - 1) / 2, cy = (h - 1) / 2, scale = std::max(h, w);
  auto u = torch::full_like(xs, rng.uniform(-1, 1));
  auto v = torch::full_like(xs, rng.uniform(-1, 1));
  const double a11 = rng.uniform(-1, 1), a12 = rng.uniform(-1, 1), a21 = rng.uniform(-1, 1), a22 = rng.uniform(-1, 1);
  u = u + (a11 * (xs - cx) + a12 * (ys - cy)) / scale;
  v = v + (a21 * (xs - cx) + a22 * (ys - cy)) / scale;
  for (int k = 0; k < 3; ++k) {
    for (auto* comp : {&u, &v}) {
      const double wavelength = rng.uniform(1.0, 2.0) * scale, angle = rng.uniform(0, 2 * kPi);
      const double fx = std::cos(angle) * 2 * kPi / wavelength, fy = std::sin(angle) * 2 * kPi / wavelength;
      *comp = *comp + rng.uniform(-0.7, 0.7) * torch::sin(xs * fx + ys * fy + rng.uniform(0, 2 * kPi));
    }
  }
  const double peak = torch::sqrt(u.square() + v.square()).max().item<double>();
  const double gain = options.max_displacement * rng.uniform(0.5, 1.0) / std::max(peak, 1e-9);
  u = u * gain + options.pan[0];
  v = v * gain + options.pan[1];

  FlowSample s;
  s.frame2 = texture.render(xs, ys);
  s.frame1 = texture.render(xs + u, ys + v);
  s.flow = torch::stack({u, v}, -1).to(torch::kFloat);
  return s;
}

namespace {
int64_t shift_margin(double max_displacement) { return static_cast<int64_t>(std::ceil(max_displacement)) + 1; }
}  // namespace

FlowSample shifted_image_sample(const std::vector<torch::Tensor>& images, const ShiftedImageOptions& options,
                                uint64_t index) {
  if (images.empty()) throw std::invalid_argument("shifted_image_sample: no images");
  constexpr double kPi = 3.14159265358979323846;
  Rng rng(stable_hash(std::to_string(index), options.seed));
  const auto& image = images[index % images.size()];
  const int64_t m = shift_margin(options.max_displacement);
  const int64_t h = options.height + 2 * m, w = options.width + 2 * m;
  if (image.size(0) < h || image.size(1) < w)
    throw std::invalid_argument("shifted_image_sample: image " + c10::str(image.sizes()) + " is smaller than the " +
                                std::to_string(h) + "x" + std::to_string(w) + " a pair needs");
  const auto y0 = static_cast<int64_t>(rng.uniform(0, static_cast<double>(image.size(0) - h + 1)));
  const auto x0 = static_cast<int64_t>(rng.uniform(0, static_cast<double>(image.size(1) - w + 1)));
  const double radius = options.max_displacement * std::sqrt(rng.uniform(0, 1)), angle = rng.uniform(0, 2 * kPi);
  const auto region = image.narrow(0, std::min(y0, image.size(0) - h), h).narrow(1, std::min(x0, image.size(1) - w), w);
  auto flow = torch::empty({h, w, 2}, torch::kFloat);
  flow.select(2, 0).fill_(radius * std::cos(angle));
  flow.select(2, 1).fill_(radius * std::sin(angle));
  auto inner = [&](const torch::Tensor& t) { return t.narrow(0, m, options.height).narrow(1, m, options.width).contiguous(); };
  FlowSample s;
  s.frame1 = inner(warp_backward(region, flow));
  s.frame2 = inner(region.to(torch::kFloat));
  s.flow = inner(flow);
  return s;
}

torch::Tensor warp_backward(const torch::Tensor& image, const torch::Tensor& flow) {
  if (image.dim() != 3 || flow.dim() != 3 || flow.size(2) != 2 || image.size(0) != flow.size(0) ||
      image.size(1) != flow.size(1))
    throw std::invalid_argument("warp_backward: need image (H, W, C) and flow (H, W, 2) of equal H, W; got " +
                                c10::str(image.sizes()) + " and " + c10::str(flow.sizes()));
  const int64_t h = image.size(0), w = image.size(1);
  const auto f = flow.to(torch::kFloat);
  const auto xs = torch::arange(w, torch::kFloat).view({1, -1}) + f.select(2, 0);
  const auto ys = torch::arange(h, torch::kFloat).view({-1, 1}) + f.select(2, 1);
  // grid_sample with align_corners=true maps -1/+1 to the centres of the border pixels.
  const auto gx = xs * (2.0f / static_cast<float>(std::max<int64_t>(w - 1, 1))) - 1.0f;
  const auto gy = ys * (2.0f / static_cast<float>(std::max<int64_t>(h - 1, 1))) - 1.0f;
  const auto grid = torch::stack({gx, gy}, -1).unsqueeze(0);
  const auto input = image.to(torch::kFloat).permute({2, 0, 1}).unsqueeze(0);
  const auto out = torch::grid_sampler(input, grid, /*bilinear*/ 0, /*zeros*/ 0, /*align_corners=*/true);
  return out.squeeze(0).permute({1, 2, 0}).contiguous();
}

// ---- sources (datasets/sources.h) ----
namespace {

FlowPairs synthetic_flow_source(SourceOptions& s, int64_t height, int64_t width) {
  SyntheticFlowOptions o;
  o.height = height;
  o.width = width;
  o.seed = static_cast<uint64_t>(s.has("seed") ? s.get_int("seed") : s.is_train() ? 1 : 2);
  o.max_displacement = s.get_double("max_displacement");
  const auto pan = s.get_doubles("pan");
  if (pan.size() != 2) s.fail("pan", "must be a list [u, v] of two numbers");
  o.pan = {pan[0], pan[1]};
  return {s.get_int("count"), [o](int64_t i) { return synthetic_flow_sample(o, i); }};
}

// Recorded pairs, top-left cropped to the model's train_size (the decoder's output grid is fixed).
FlowPairs recorded_flow_pairs(SourceOptions& s, std::vector<FlowFiles> files, const std::string& root, int64_t height,
                              int64_t width) {
  if (files.empty()) s.fail("path", "no image pairs found under '" + root + "'");
  const auto count = static_cast<int64_t>(files.size());
  return {count, [files = std::move(files), height, width](int64_t i) {
            const auto& f = files[static_cast<size_t>(i)];
            auto sample = load_flow_sample(f);
            if (sample.frame1.size(0) < height || sample.frame1.size(1) < width)
              throw std::runtime_error(f.frame1.string() + ": smaller than train_size");
            for (auto* t : {&sample.frame1, &sample.frame2, &sample.flow})
              *t = t->narrow(0, 0, height).narrow(1, 0, width).contiguous();
            return sample;
          }};
}

// (H, W, 3) float32 resized (INTER_AREA when shrinking) so that its shorter side is `side` pixels.
torch::Tensor resize_shorter_side(const torch::Tensor& image, int64_t side) {
  const int64_t h = image.size(0), w = image.size(1);
  const double scale = static_cast<double>(side) / static_cast<double>(std::min(h, w));
  const int out_h = static_cast<int>(std::lround(static_cast<double>(h) * scale));
  const int out_w = static_cast<int>(std::lround(static_cast<double>(w) * scale));
  const auto in = image.contiguous();
  const cv::Mat src(static_cast<int>(h), static_cast<int>(w), CV_32FC3, in.data_ptr<float>());
  cv::Mat dst;
  cv::resize(src, dst, cv::Size(out_w, out_h), 0, 0, scale < 1 ? cv::INTER_AREA : cv::INTER_LINEAR);
  return torch::from_blob(dst.data, {out_h, out_w, 3}, torch::kFloat).clone();
}

// Real images (a file, or a folder's image files) moved by known translations: a check of what a
// model trained on synthetic pairs does on photographs. `short_side` > 0 first resizes each image
// (INTER_AREA) so that its shorter side has that many pixels, bringing its detail to the scale of
// the training textures.
FlowPairs shifted_images_source(SourceOptions& s, int64_t height, int64_t width) {
  const fs::path root = s.required("path");
  ShiftedImageOptions o;
  o.height = height;
  o.width = width;
  o.seed = static_cast<uint64_t>(s.has("seed") ? s.get_int("seed") : s.is_train() ? 1 : 2);
  o.max_displacement = s.get_double("max_displacement");
  if (!(o.max_displacement >= 0)) s.fail("max_displacement", "must be a number of pixels >= 0");
  const auto short_side = s.get_int("short_side");
  if (short_side < 0) s.fail("short_side", "must be 0 (keep the size) or a number of pixels");
  std::vector<fs::path> files;
  std::error_code ec;
  if (fs::is_directory(root, ec)) {
    for (const auto& entry : fs::directory_iterator(root))
      if (is_image_file(entry)) files.push_back(entry.path());
    std::sort(files.begin(), files.end());
  } else if (fs::is_regular_file(root, ec)) {
    files.push_back(root);
  } else {
    s.fail("path", "'" + root.string() + "' is neither an image file nor a folder");
  }
  if (files.empty()) s.fail("path", "no image files in '" + root.string() + "'");
  const int64_t m = shift_margin(o.max_displacement);
  // Each photo is decoded when a pair asks for it (checked once here, not kept).
  auto load = [short_side](const fs::path& file) {
    auto image = read_image(file).to(torch::kFloat);
    return short_side > 0 ? resize_shorter_side(image, short_side) : image;
  };
  for (const auto& file : files) {
    const auto image = load(file);
    if (image.size(0) < height + 2 * m || image.size(1) < width + 2 * m)
      s.fail("path", "'" + file.string() + "' is " + std::to_string(image.size(1)) + "x" + std::to_string(image.size(0)) +
                         " pixels" + (short_side > 0 ? " after short_side" : std::string()) + "; pairs of " +
                         std::to_string(width) + "x" + std::to_string(height) + " with max_displacement " +
                         c10::str(o.max_displacement) + " need at least " + std::to_string(width + 2 * m) + "x" +
                         std::to_string(height + 2 * m));
  }
  return {s.get_int("count"), [o, files = std::move(files), load](int64_t i) {
            // Pair i of photo i mod n, exactly as with every photo in memory.
            return shifted_image_sample({load(files[static_cast<size_t>(i) % files.size()])}, o, static_cast<uint64_t>(i));
          }};
}

FlowPairs sintel_source(SourceOptions& s, int64_t height, int64_t width) {
  const auto root = s.required("path");
  const auto pass = s.get_string("pass");
  return recorded_flow_pairs(s, discover_sintel(root, pass), root, height, width);
}

FlowPairs chairs_source(SourceOptions& s, int64_t height, int64_t width) {
  const auto root = s.required("path");
  return recorded_flow_pairs(s, discover_flying_chairs(root), root, height, width);
}

// The seed of generated pairs: the two splits differ unless a run file says otherwise.
OptionSpec seed_option() {
  return {"seed", "int", "", "seed of the generated pairs; default 1 for data.train, 2 otherwise"};
}

}  // namespace

const SourceRegistry<FlowSource>& flow_sources() {
  static const SourceRegistry<FlowSource> registry = {
      {"synthetic",
       {synthetic_flow_source, "generated pairs: a smooth random texture moved by a smooth flow, with exact ground truth",
        {{"count", "int", "1000", "number of pairs"},
         seed_option(),
         {"max_displacement", "float", "6.0", "largest flow in pixels (each pair draws its own scale in [0.5, 1] of it)"},
         {"pan", "list[float]", "[0.0, 0.0]", "a camera pan [u, v] in pixels added to every pair's flow"}}}},
      {"sintel",
       {sintel_source, "MPI Sintel's training pairs (<root>/training/<pass>/<scene>/frame_XXXX.png and their flow)",
        {{"path", "string", "", "the Sintel root folder", true},
         {"pass", "string", "clean", "the rendering pass read: clean or final"}}}},
      {"chairs",
       {chairs_source, "FlyingChairs pairs (XXXXX_img1.ppm, XXXXX_img2.ppm, XXXXX_flow.flo)",
        {{"path", "string", "", "the FlyingChairs folder (the files in it or in its data/)", true}}}},
      {"shifted_images",
       {shifted_images_source, "real images moved by known translations: a check of a model on photographs",
        {{"path", "string", "", "an image file or a folder of images", true},
         {"count", "int", "128", "number of pairs (pair i moves image i mod the number of images)"},
         seed_option(),
         {"max_displacement", "float", "2.0", "largest shift in pixels (drawn uniformly from the disc of this radius)"},
         {"short_side", "int", "0",
          "first resize each image so that its shorter side has this many pixels; 0 keeps the size"}}}},
  };
  return registry;
}

}  // namespace perceiver::datasets
