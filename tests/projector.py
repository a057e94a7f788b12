"""A tiny multimodal projector (mmproj GGUF) for the bundled text-only Gemma model, written in well under a second.

No real projector for gemma-3-270m exists, and the machines the tests run on reach no Hugging Face. llama.cpp's
`gemma3` projector is a SigLIP-style vision tower followed by one linear map onto the LLM's embedding width, so a
one-layer tower with random weights (about 0.5 MB) is a projector llama.cpp loads and runs: it reports vision and
turns an image into a few prompt tokens. The tokens mean nothing; the tests only prove the wiring.

(The `globalmm` package builds such files with real SigLIP weights, but it fetches SigLIP and the LLM from the
Hub and pulls in torch and transformers, over 1 GB: see the note of the `mmproj` branch.)
"""

from __future__ import annotations

from pathlib import Path

IMAGE_SIZE, PATCH_SIZE, MERGE = 56, 14, 2  # 4x4 patches pooled 2x2: each image becomes 4 prompt tokens
IMAGE_TOKENS = ((IMAGE_SIZE // PATCH_SIZE) // MERGE) ** 2


def write_tiny_projector(model: Path, out: Path, *, width: int = 64, layers: int = 1) -> Path:
    """Write a random `gemma3`-type projector whose output width is `model`'s embedding length."""
    import gguf
    import numpy as np

    from corral.manager.scan import read_gguf

    info = read_gguf(model)  # not gguf.GGUFReader: it takes ~17 s over the bundled model's 262k-token vocabulary
    n_embd = int(info.metadata[f"{info.architecture}.embedding_length"])
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(out), "clip")
    w.add_string("clip.projector_type", "gemma3")
    w.add_bool("clip.has_text_encoder", False)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_uint32("clip.vision.image_size", IMAGE_SIZE)
    w.add_uint32("clip.vision.patch_size", PATCH_SIZE)
    w.add_uint32("clip.vision.embedding_length", width)
    w.add_uint32("clip.vision.feed_forward_length", 2 * width)
    w.add_uint32("clip.vision.projection_dim", n_embd)
    w.add_uint32("clip.vision.block_count", layers)
    w.add_uint32("clip.vision.attention.head_count", 4)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.projector.scale_factor", MERGE)

    def rand(name: str, *shape: int) -> None:  # numpy's (row-major) shape; the writer reverses it for ggml
        w.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))

    def ones(name: str) -> None:
        w.add_tensor(name, np.ones(width, np.float32))

    rand("v.patch_embd.weight", width, 3, PATCH_SIZE, PATCH_SIZE)
    rand("v.patch_embd.bias", width)
    rand("v.position_embd.weight", (IMAGE_SIZE // PATCH_SIZE) ** 2, width)
    for i in range(layers):
        for norm in ("ln1", "ln2"):
            ones(f"v.blk.{i}.{norm}.weight")
            rand(f"v.blk.{i}.{norm}.bias", width)
        for proj in ("attn_q", "attn_k", "attn_v", "attn_out"):
            rand(f"v.blk.{i}.{proj}.weight", width, width)
            rand(f"v.blk.{i}.{proj}.bias", width)
        rand(f"v.blk.{i}.ffn_up.weight", 2 * width, width)
        rand(f"v.blk.{i}.ffn_up.bias", 2 * width)
        rand(f"v.blk.{i}.ffn_down.weight", width, 2 * width)
        rand(f"v.blk.{i}.ffn_down.bias", width)
    ones("v.post_ln.weight")
    rand("v.post_ln.bias", width)
    rand("mm.input_projection.weight", width, n_embd)
    ones("mm.soft_emb_norm.weight")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def tiny_png(side: int = 8, rgb: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    """A one-colour PNG, built with the standard library (no Pillow in the test dependencies)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * side for _ in range(side))
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
