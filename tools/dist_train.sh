#!/usr/bin/env bash
# Distributed training with torchrun: tools/dist_train.sh CONFIG GPUS [train.py args...]
# Several nodes: NNODES, NODE_RANK, MASTER_ADDR, PORT. Without CUDA the process group uses
# gloo, so `tools/dist_train.sh CONFIG 2` also runs two CPU processes.
set -euo pipefail
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
DIR="$(cd "$(dirname "$0")" && pwd)"
PYTHON=${PYTHON:-python}
if [ -x "$DIR/../.venv/bin/python" ] && [ -z "${VIRTUAL_ENV:-}" ] && [ "$PYTHON" = python ]; then
  PYTHON="$DIR/../.venv/bin/python"
fi
export PYTHONPATH="$DIR/..${PYTHONPATH:+:$PYTHONPATH}"
# A missing dataset is one line here, not a traceback from every process after the log.
"$PYTHON" "$DIR/_check_data.py" train "$CONFIG" "${@:3}"
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" --master_port="$PORT" \
    "$DIR/train.py" "$CONFIG" --launcher pytorch "${@:3}"
