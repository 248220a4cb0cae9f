#!/usr/bin/env bash
# What tools/dist_train.sh and tools/dist_test.sh share:
#   tools/_torchrun.sh {train|test} GPUS CONFIG [CHECKPOINT] [train.py / test.py args...]
# Several nodes: NNODES, NODE_RANK, MASTER_ADDR, PORT. Without CUDA the process group uses
# gloo, so it also runs CPU processes.
set -euo pipefail
MODE=$1
GPUS=$2
shift 2
NPOS=1  # positional arguments of the tool: CONFIG (train), CONFIG CHECKPOINT (test)
if [ "$MODE" = test ]; then NPOS=2; fi
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
"$PYTHON" "$DIR/_check_data.py" "$MODE" "$@"
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" --master_port="$PORT" \
    "$DIR/$MODE.py" "${@:1:$NPOS}" --launcher pytorch "${@:$((NPOS + 1))}"
