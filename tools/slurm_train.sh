#!/usr/bin/env bash
# Training under slurm: one task per GPU, mmengine reads the slurm environment (--launcher slurm).
#   GPUS=16 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args]
# The interpreter every task runs is $PYTHON (e.g. PYTHON=/path/venv/bin/python), else python3 on PATH.
set -euo pipefail
PYTHON=${PYTHON:-python3}
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
cd "$(dirname "$0")/.."
PYTHONPATH="$PWD:${PYTHONPATH:-}" srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE" \
  --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 \
  $SRUN_ARGS "$PYTHON" -u tools/train.py "$CONFIG" --work-dir="$WORK_DIR" --launcher slurm "${@:5}"
