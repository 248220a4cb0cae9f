#!/usr/bin/env bash
# Distributed testing with torchrun: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]
# Several nodes: NNODES, NODE_RANK, MASTER_ADDR, PORT. Without CUDA the process group uses
# gloo, so it also runs CPU processes.
set -euo pipefail
exec "$(dirname "$0")/_torchrun.sh" test "$3" "$1" "$2" "${@:4}"
