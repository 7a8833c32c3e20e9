#!/usr/bin/env python3
"""Accuracy of quantized weights against bf16, through the real omni-run.

For each prompt: omni-run --weights bf16 decodes N greedy steps (logits saved); then each other
format runs the same prompt with --force-ids set to the bf16 tokens (teacher forcing), so every
step of every format sees the same context. Per format it reports the cosine similarity of the
logits to bf16 (mean and minimum over steps), the relative L2 error, and top-1 agreement (the
format's own greedy pick equals bf16's at that step).

  python3 tools/quant_accuracy.py --omni-run build/tools/omni-run --model /tmp/fw/models/full-width \\
      --device cuda --steps 64 --formats "int8;int4"
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def run(args, weights, ids, force=None):
    with tempfile.TemporaryDirectory() as d:
        npy = os.path.join(d, "logits.npy")
        cmd = [args.omni_run, "--model", args.model, "--device", args.device, "--weights", weights, "--ids",
               ",".join(map(str, ids)), "--greedy", "--max-new-tokens", str(args.steps), "--json",
               "--logits-out", npy]
        if force:
            cmd += ["--force-ids", ",".join(map(str, force))]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"omni-run --weights {weights} failed: {p.stderr.strip()}")
        out = json.loads(p.stdout.strip().splitlines()[-1])
        return out["tokens"], np.load(npy).astype(np.float64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--omni-run", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--formats", default="int8;int4", help="weight formats separated by ';'")
    ap.add_argument("--prompts", default="151644,872,198,9707,0,3555,374,279;151644,872,198,40,1079,264,2632",
                    help="token-id prompts separated by ';'")
    args = ap.parse_args()
    rows = []
    for pi, prompt in enumerate(args.prompts.split(";")):
        ids = [int(t) for t in prompt.split(",")]
        ref_tokens, ref = run(args, "bf16", ids)
        for fmt in args.formats.split(";"):
            picks, got = run(args, fmt, ids, force=ref_tokens)
            n = min(len(ref), len(got))
            cos = [float(np.dot(ref[i], got[i]) / (np.linalg.norm(ref[i]) * np.linalg.norm(got[i]))) for i in range(n)]
            rel = [float(np.linalg.norm(got[i] - ref[i]) / np.linalg.norm(ref[i])) for i in range(n)]
            agree = sum(int(picks[i] == ref_tokens[i]) for i in range(n))
            # The bf16 margin between its top two logits where the format disagrees.
            gaps = [float(np.sort(ref[i])[-1] - np.sort(ref[i])[-2]) for i in range(n) if picks[i] != ref_tokens[i]]
            rows.append((pi, fmt, n, float(np.mean(cos)), float(np.min(cos)), float(np.mean(rel)), float(np.max(rel)),
                         agree, max(gaps) if gaps else 0.0))
    print("| prompt | weights | steps | cosine mean | cosine min | rel. L2 mean | rel. L2 max | top-1 agree | "
          "largest bf16 top-2 gap where it differs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for pi, fmt, n, cm, cmin, rm, rmax, agree, gap in rows:
        print(f"| {pi} | {fmt} | {n} | {cm:.6f} | {cmin:.6f} | {rm:.4f} | {rmax:.4f} | {agree}/{n} | {gap:.3f} |")


if __name__ == "__main__":
    main()
