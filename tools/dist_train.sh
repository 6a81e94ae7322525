#!/usr/bin/env bash
# Multi-process training with torchrun (mmengine DDP); one process per GPU, or gloo processes on CPU.
#   bash tools/dist_train.sh CONFIG NUM_PROCS [train.py args]
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=host0 bash tools/dist_train.sh CONFIG 8   # on each node
# The interpreter is $PYTHON (e.g. PYTHON=/path/venv/bin/python), else python3 on PATH; torchrun starts every
# worker with that same interpreter.
set -euo pipefail
PYTHON=${PYTHON:-python3}
CONFIG=$1
NPROCS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
cd "$(dirname "$0")/.."
PYTHONPATH="$PWD:${PYTHONPATH:-}" exec "$PYTHON" -m torch.distributed.run \
  --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" --nproc_per_node="$NPROCS" \
  --master_port="$PORT" tools/train.py "$CONFIG" --launcher pytorch "${@:3}"
