"""compare(): build compressed variants of one model, evaluate them all against the float
baseline on the same texts, and report size against quality (the Pareto view): a Markdown
table, a JSON record and, where matplotlib is installed, a plot (see plotting.py).

All variants are scored in one pass over each text's windows (evaluate_many), so the baseline's
distributions are computed once per window however many variants there are.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .checkpoint import Checkpoint
from .compress.base import LINEAR_PATTERN
from .evaluate import EvalResult, evaluate_many, read_text
from .formats.atomic import atomic_output_file
from .variants import BASELINE, Variant, build, parse_variant

DEFAULT_VARIANTS = ("f32", "rtn8", "rtn4-g32", "rtn4-g128", "gptq4-g128", "awq4-g128",
                    "gptq4-g128-mixed0.25")


@dataclass
class Row:
    variant: Variant
    size: int                       # bytes of all tensors as stored
    linear_bits: float              # stored bits per weight of the linear layers
    seconds: float                  # time to build the variant
    results: dict[str, EvalResult] = field(default_factory=dict)   # by text name

    @property
    def name(self) -> str:
        return self.variant.name


def linear_bits(ckpt: Checkpoint) -> float:
    linear = [t for n, t in ckpt.tensors.items() if LINEAR_PATTERN.search(n)]
    return 8 * sum(t.nbytes for t in linear) / max(sum(t.numel for t in linear), 1)


@dataclass
class Comparison:
    model: str
    texts: list[str]
    ctx: int
    max_tokens: int | None
    calib: str | None
    calib_tokens: int
    rows: list[Row]

    def against_rtn(self) -> list[dict]:
        """Each calibrated variant against round-to-nearest in the same format (same size)."""
        out = []
        for row in self.rows:
            v = row.variant
            if v.method not in ("gptq", "awq") or v.options.get("mixed"):
                continue
            rtn = next((r for r in self.rows if r.variant.method == "rtn" and
                        not r.variant.options.get("mixed") and r.variant.format == v.format), None)
            if rtn is None:
                continue
            for text in self.texts:
                a, b = row.results[text], rtn.results[text]
                out.append({"variant": row.name, "rtn": rtn.name, "text": text,
                            "kl_mean": a.kl_mean, "rtn_kl_mean": b.kl_mean,
                            "kl_change": a.kl_mean / b.kl_mean - 1 if b.kl_mean else None,
                            "ppl": a.ppl, "rtn_ppl": b.ppl, "ppl_change": a.ppl - b.ppl})
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Comparison":
        """A comparison read back from its compare.json (to re-plot or re-tabulate it)."""
        rows = [Row(parse_variant(r["variant"]), r["size"], r["linear_bits"], r["seconds"],
                    {t: EvalResult(**res) for t, res in r["results"].items()}) for r in d["rows"]]
        return cls(d["model"], d["texts"], d["ctx"], d["max_tokens"], d["calib"], d["calib_tokens"],
                   rows)

    def to_dict(self) -> dict:
        return {"model": self.model, "texts": self.texts, "ctx": self.ctx,
                "max_tokens": self.max_tokens, "calib": self.calib, "calib_tokens": self.calib_tokens,
                "rows": [{"variant": r.name, "size": r.size, "linear_bits": r.linear_bits,
                          "seconds": r.seconds,
                          "results": {t: res.to_dict() for t, res in r.results.items()}}
                         for r in self.rows],
                "against_rtn": self.against_rtn()}

    def markdown(self) -> str:
        scored = next(iter(self.rows[0].results.values())).tokens if self.rows else 0
        lines = [f"Model: `{self.model}`. Context {self.ctx}, "
                 + (f"the first {self.max_tokens} tokens of each text" if self.max_tokens else "whole texts")
                 + f" ({scored} scored positions: the second half of each window). "
                 f"KL and top-1 against `{BASELINE}` (the source dequantised to float32)."
                 + (f" Calibration: {self.calib_tokens} tokens of {self.calib}." if self.calib else ""),
                 ""]
        for text in self.texts:
            lines += [f"**{text}**", "",
                      "| variant | size (MB) | bits/weight (linear) | perplexity | KL mean | KL p99 | top-1 |",
                      "|---|---:|---:|---:|---:|---:|---:|"]
            for r in self.rows:
                res = r.results[text]
                kl = "–" if res.kl_mean is None else f"{res.kl_mean:.5f}"
                p99 = "–" if res.kl_p99 is None else f"{res.kl_p99:.4f}"
                top1 = "–" if res.top1 is None else f"{100 * res.top1:.2f}%"
                lines.append(f"| {r.name} | {r.size / 1e6:.2f} | {r.linear_bits:.2f} | "
                             f"{res.ppl:.4f} | {kl} | {p99} | {top1} |")
            lines.append("")
        deltas = self.against_rtn()
        if deltas:
            lines += ["**Calibrated against round-to-nearest in the same format (same size)**", "",
                      "| variant | against | text | KL mean | perplexity |", "|---|---|---|---:|---:|"]
            for d in deltas:
                change = "" if d["kl_change"] is None else f" ({100 * d['kl_change']:+.1f}%)"
                lines.append(f"| {d['variant']} | {d['rtn']} | {d['text']} | "
                             f"{d['kl_mean']:.5f} vs {d['rtn_kl_mean']:.5f}{change} | "
                             f"{d['ppl']:.4f} vs {d['rtn_ppl']:.4f} ({d['ppl_change']:+.4f}) |")
            lines.append("")
        return "\n".join(lines)

    def write(self, out_dir, plot: bool = True) -> list[Path]:
        """compare.md, compare.json and (with matplotlib, when plot) compare.png in out_dir."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name, content in (("compare.md", self.markdown()),
                              ("compare.json", json.dumps(self.to_dict(), indent=2) + "\n")):
            with atomic_output_file(out_dir / name) as tmp:
                tmp.write_text(content, encoding="utf-8")
            written.append(out_dir / name)
        if plot:
            from .plotting import plot_comparison, plotting_available
            if plotting_available():
                written.append(plot_comparison(self, out_dir / "compare.png"))
        return written


def compare(src, texts, variants=DEFAULT_VARIANTS, calib=None, calib_tokens: int = 8192,
            ctx: int = 512, max_tokens: int | None = 16384, backend: str = "cpu",
            threads: int | None = None, save_models=None, progress=None,
            calib_progress=None) -> Comparison:
    """Compare variants (specs, see variants.py) of the model at src on texts ({name: text}, or
    a list of file paths). calib: calibration text file(s), for the calibrated variants.
    save_models: a folder to write every built variant into (slmkit folders, by variant name).
    progress(text_name) -> callback(done, total) follows the evaluation; calib_progress(name)
    -> callback(done, total) the calibrations."""
    from .compress.calibrate import read_calibration_text
    from .formats.hf import write_hf
    from .loading import model_from_checkpoint, read_checkpoint
    if not isinstance(texts, dict):
        texts = {Path(p).name: read_text(p) for p in texts}
    if not texts:
        raise ValueError("compare: no text to evaluate on")
    parsed = [v if isinstance(v, Variant) else parse_variant(v) for v in variants]
    if BASELINE not in [v.name for v in parsed]:
        parsed.insert(0, parse_variant(BASELINE))
    names = [v.name for v in parsed]
    if len(set(names)) != len(names):
        raise ValueError(f"compare: variant names repeat: {names}")
    calib_text = None
    if any(v.calibrated for v in parsed):
        if calib is None:
            needing = [v.name for v in parsed if v.calibrated]
            raise ValueError(f"variants {', '.join(needing)} need calibration text: pass --calib FILE")
        calib_text = read_calibration_text(calib)
    source = read_checkpoint(src)
    rows, models, base = [], [], None
    for v in parsed:
        t0 = time.perf_counter()
        ckpt = build(v, source, calib_text, calib_tokens, threads=threads,
                     progress=calib_progress(v.name) if calib_progress and v.calibrated else None)
        seconds = time.perf_counter() - t0
        if save_models is not None and v.path is None:
            write_hf(ckpt, Path(save_models) / v.name, tokenizer_from=source.tokenizer)
        # one tokenizer for all: the first model's
        model = model_from_checkpoint(ckpt, backend, threads,
                                      tokenizer=models[0].tokenizer if models else None)
        base = model if v.name == BASELINE else base
        rows.append(Row(v, ckpt.nbytes, linear_bits(ckpt), seconds))
        models.append(model)
    for text_name, text in texts.items():
        results = evaluate_many(models, text, base=base, ctx=ctx, max_tokens=max_tokens,
                                progress=progress(text_name) if progress else None)
        for row, res in zip(rows, results):
            row.results[text_name] = res
    calib_names = None if calib is None else ", ".join(
        Path(p).name for p in ([calib] if isinstance(calib, (str, Path)) else calib))
    return Comparison(str(src), list(texts), ctx, max_tokens, calib_names, calib_tokens, rows)
