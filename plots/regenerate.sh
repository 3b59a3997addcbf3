#!/usr/bin/env bash
# Regenerates every reference picture the README shows (about 3 minutes on 2 cores).
# Weights files and per-run plots of sweeps are pruned: plots/ keeps what the pictures are
# drawn from (CSV, summaries).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
bin=target/release/dtpsim
rm -rf plots/theory plots/discrete_teacher_student plots/quickstart plots/teacher_student_gate plots/anytime plots/delays plots/gating plots/bench
$bin theory --out plots/theory
$bin run scenarios/teacher_student_discrete.json --out plots/discrete_teacher_student --quiet
$bin run scenarios/quickstart.json --out plots/quickstart --quiet
$bin sweep scenarios/teacher_student.json --out plots/teacher_student_gate --quiet
$bin sweep scenarios/anytime.json --out plots/anytime --quiet
$bin sweep scenarios/delays.json --out plots/delays --quiet
$bin sweep scenarios/gating.json --out plots/gating --quiet
$bin bench --out plots/bench
find plots -name 'weights_*.json' -delete
# the runs of a sweep keep their CSVs and summaries; their own plots are redrawn by `dtpsim plot`
find plots -path '*/runs/*' \( -name '*.png' -o -name '*.svg' \) -delete
