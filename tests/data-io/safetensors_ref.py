#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# tests/data-io/safetensors_ref.py: an independent safetensors writer and reader (struct + json,
# following https://github.com/huggingface/safetensors#format), used to make the interop fixtures
# and to check files that nodal writes. Debian 12 has no python3-safetensors and torch 1.13 has no
# safetensors support, so this script stands in for the reference tooling; torch is optional.
#
#   safetensors_ref.py write DIR   writes DIR/reference.safetensors and DIR/mixed.safetensors
#   safetensors_ref.py read FILE   validates FILE and prints every tensor (as torch tensors if
#                                  torch is installed)
#   safetensors_ref.py torch-fixture FILE   a seeded torch model's state_dict (python3-torch),
#                                  and its values as C hex floats for tests/test_io.c
import json
import struct
import sys

SIZES = {"F64": 8, "F32": 4, "I64": 8, "I32": 4, "U8": 1}
FORMATS = {"F64": "<d", "F32": "<f", "I64": "<q", "I32": "<i", "U8": "<B"}


def serialize(tensors, metadata=None):
    """tensors: name -> (dtype, shape, flat values). Sorted by name, like the reference."""
    header, blobs, at = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        dtype, shape, values = tensors[name]
        count = 1
        for d in shape:
            count *= d
        assert count == len(values), name
        blob = b"".join(struct.pack(FORMATS[dtype], v) for v in values)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [at, at + len(blob)]}
        blobs.append(blob)
        at += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)  # pad with spaces to a multiple of 8, as the reference
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def deserialize(raw):
    (n,) = struct.unpack("<Q", raw[:8])
    assert 8 + n <= len(raw), "header length exceeds the file"
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    data = raw[8 + n :]
    meta = header.pop("__metadata__", None)
    spans = sorted((info["data_offsets"], name) for name, info in header.items())
    at = 0
    for (begin, end), name in spans:
        assert begin == at, f"{name}: not contiguous"
        at = end
    assert at == len(data), "data section length"
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype, shape = info["dtype"], info["shape"]
        count = 1
        for d in shape:
            count *= d
        assert end - begin == count * SIZES[dtype], f"{name}: byte count"
        values = [v[0] for v in struct.iter_unpack(FORMATS[dtype], data[begin:end])]
        out[name] = (dtype, shape, values)
    return meta, out


def reference_tensors():
    """The values tests/test_io.c expects; all exact in float and double."""
    return {
        "weight": ("F64", [2, 3], [0.25 * k - 1.0 for k in range(6)]),
        "bias": ("F64", [3], [0.5, -1.25, 2.0]),
        "scalar": ("F64", [], [3.5]),
        "opt.exp_avg.weight": ("F64", [2, 3], [1.0 / 2**k for k in range(6)]),
    }


def mixed_tensors():
    return {
        "f32": ("F32", [4], [1.5, -2.0, 0.125, 1e-3]),
        "f64": ("F64", [2, 2], [1.0 / 3.0, -2.5, 1e30, -0.0]),
        "ids": ("I64", [3], [7, -1, 1 << 40]),
    }


def torch_fixture(path):
    """A torch model's state_dict, written the way safetensors.torch.save_file does it: each
    tensor's raw little-endian storage bytes. Prints the values as C hex floats for the test."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh(), torch.nn.Linear(2, 1))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    state["step"] = torch.tensor(0.1, dtype=torch.float64)  # a 0-dim F64 tensor
    header, blobs, at = {}, [], 0
    names = {torch.float32: "F32", torch.float64: "F64"}
    for name in sorted(state):
        raw = state[name].numpy().tobytes()  # little-endian on this host
        header[name] = {"dtype": names[state[name].dtype], "shape": list(state[name].shape),
                        "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    for name in sorted(state):
        vals = ", ".join(float(v).hex() for v in state[name].flatten().tolist())
        print(f"/* {name} {tuple(state[name].shape)} */ {{{vals}}},")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "write":
        d = sys.argv[2]
        with open(f"{d}/reference.safetensors", "wb") as f:
            f.write(serialize(reference_tensors(), {"format": "pt", "written_by": "safetensors_ref.py"}))
        with open(f"{d}/mixed.safetensors", "wb") as f:
            f.write(serialize(mixed_tensors()))
    elif len(sys.argv) == 3 and sys.argv[1] == "torch-fixture":
        torch_fixture(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "read":
        with open(sys.argv[2], "rb") as f:
            meta, tensors = deserialize(f.read())
        print("metadata:", meta)
        try:
            import torch
        except ImportError:
            torch = None
        for name, (dtype, shape, values) in sorted(tensors.items()):
            if torch is not None:  # as safetensors.torch.load does: the raw bytes, reinterpreted
                with open(sys.argv[2], "rb") as f:
                    raw = f.read()
                (n,) = struct.unpack("<Q", raw[:8])
                begin, end = json.loads(raw[8 : 8 + n])[name]["data_offsets"]
                tdtype = {"F64": torch.float64, "F32": torch.float32, "I64": torch.int64}[dtype]
                t = torch.frombuffer(bytearray(raw[8 + n + begin : 8 + n + end]), dtype=tdtype)
                t = t.reshape(shape)
                assert t.flatten().tolist() == values, name
                print(name, dtype, tuple(t.shape), t)
            else:
                print(name, dtype, shape, values)
    else:
        sys.exit(__doc__ or "usage: safetensors_ref.py write DIR | read FILE")


if __name__ == "__main__":
    main()
