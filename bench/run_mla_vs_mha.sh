#!/usr/bin/env bash
# MLA vs MHA at equal width on the benchmark model (recipes/bench-moe.yaml: dim 256, 8 heads of
# 32), tessera and PyTorch side by side in one run. MLA takes V3's proportions per head: q/k
# without RoPE = v = the MHA head width, RoPE dims half of it, kv_lora_rank 4 heads' width,
# q_lora_rank 12 heads' width capped at dim (V3: 128, 64, 128, 512, 1536 at dim 7168).
# Usage: bench/run_mla_vs_mha.sh [build dir, default build] [threads, default 1]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
threads=${2:-1}
recipe=recipes/bench-moe.yaml
mla=(--set model.attention=mla --set model.qk_nope_head_dim=32 --set model.qk_rope_head_dim=16
     --set model.v_head_dim=32 --set model.kv_lora_rank=128 --set model.q_lora_rank=256)
echo "# $(lscpu | sed -n 's/^Model name: *//p'), $threads thread(s), $recipe"
printf "%-5s %-8s %12s %10s %10s\n" attn impl tokens/s step_s GFLOP/s
declare -A tps
for attn in mha mla; do
  sets=()
  [ "$attn" = mla ] && sets=("${mla[@]}")
  t=$("$build/bench/train_throughput" --recipe "$recipe" --threads "$threads" --steps 10 "${sets[@]}" | tail -n 1)
  p=$(/usr/bin/python3 bench/pytorch_moe_bench.py --recipe "$recipe" --threads "$threads" --steps 10 "${sets[@]}" | tail -n 1)
  for impl in tessera pytorch; do
    json=$t; [ "$impl" = pytorch ] && json=$p
    read -r tok step gf < <(/usr/bin/python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["tokens_per_s"], d["step_s"], d.get("gflops", float("nan")))' "$json")
    printf "%-5s %-8s %12.0f %10.4f %10.1f\n" "$attn" "$impl" "$tok" "$step" "$gf"
    tps[$attn,$impl]=$tok
  done
done
for impl in tessera pytorch; do
  /usr/bin/python3 -c 'import sys; print(f"{sys.argv[1]}: MLA / MHA tokens/s = {float(sys.argv[2]) / float(sys.argv[3]):.2f}")' \
    "$impl" "${tps[mla,$impl]}" "${tps[mha,$impl]}"
done
