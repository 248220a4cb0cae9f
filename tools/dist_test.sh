#!/usr/bin/env bash
# Distributed testing with torchrun: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]
# Several nodes: NNODES, NODE_RANK, MASTER_ADDR, PORT. Without CUDA the process group uses
# gloo, so it also runs CPU processes.
set -euo pipefail
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
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
"$PYTHON" "$DIR/_check_data.py" test "$CONFIG" "$CHECKPOINT" "${@:4}"
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" --master_port="$PORT" \
    "$DIR/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
