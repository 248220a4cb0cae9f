#!/usr/bin/env bash
# Distributed training with torchrun: tools/dist_train.sh CONFIG GPUS [train.py args...]
# Several nodes: NNODES, NODE_RANK, MASTER_ADDR, PORT. Without CUDA the process group uses
# gloo, so `tools/dist_train.sh CONFIG 2` also runs two CPU processes.
set -euo pipefail
exec "$(dirname "$0")/_torchrun.sh" train "$2" "$1" "${@:3}"
