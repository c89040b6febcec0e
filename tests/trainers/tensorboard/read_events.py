"""Decodes TensorBoard event files with python3-protobuf and prints what they hold as JSON.

An independent reader for the tests: the .proto beside this file (TensorFlow's field numbers) is
compiled with protoc, and every record's two CRC-32Cs are checked with the bitwise definition below,
not with the C++ writer's code. Usage: read_events.py EVENT_DIR
"""
import glob
import importlib
import json
import os
import struct
import subprocess
import sys
import tempfile


def crc32c(data):
    # Castagnoli polynomial, reflected (0x82F63B78), initial and final XOR 0xFFFFFFFF.
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc):
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def records(path):
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        (length_crc,) = struct.unpack_from("<I", data, pos + 8)
        if masked(crc32c(data[pos:pos + 8])) != length_crc:
            sys.exit(f"{path}: byte {pos}: length CRC mismatch")
        body = data[pos + 12:pos + 12 + length]
        (body_crc,) = struct.unpack_from("<I", data, pos + 12 + length)
        if masked(crc32c(body)) != body_crc:
            sys.exit(f"{path}: byte {pos}: data CRC mismatch")
        yield body
        pos += 12 + length + 4


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = tempfile.mkdtemp()
    subprocess.run(["protoc", f"--proto_path={here}", f"--python_out={out_dir}", "tensorboard_event.proto"], check=True)
    sys.path.insert(0, out_dir)
    pb = importlib.import_module("tensorboard_event_pb2")
    result = {"files": [], "file_versions": [], "scalars": [], "images": [], "texts": []}
    for path in sorted(glob.glob(os.path.join(sys.argv[1], "events.out.tfevents.*"))):
        result["files"].append(os.path.basename(path))
        for body in records(path):
            event = pb.Event()
            event.ParseFromString(body)
            if event.wall_time <= 0:
                sys.exit(f"{path}: event without wall_time")
            kind = event.WhichOneof("what")
            if kind == "file_version":
                result["file_versions"].append(event.file_version)
                continue
            for v in event.summary.value:
                which = v.WhichOneof("value")
                if which == "simple_value":
                    value = v.simple_value
                    result["scalars"].append([v.tag, event.step, value if value == value else None])
                elif which == "image":
                    png = v.image.encoded_image_string
                    ok = png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (v.image.width, v.image.height)
                    result["images"].append([v.tag, event.step, v.image.height, v.image.width, ok])
                elif which == "tensor":
                    t = v.tensor
                    if t.dtype != 7 or [d.size for d in t.tensor_shape.dim] != [1]:
                        sys.exit(f"{path}: text '{v.tag}' is not a DT_STRING tensor of shape [1]")
                    result["texts"].append([v.tag, event.step, v.metadata.plugin_data.plugin_name,
                                            t.string_val[0].decode("utf-8")])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
