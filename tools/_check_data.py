"""Check that the data a run reads exist, before tools/dist_{train,test}.sh start torchrun.

    python tools/_check_data.py {train|test} CONFIG [the train.py / test.py arguments]

Exits with one line naming a missing annotation file or image folder (see
``_common.check_data``); silent otherwise. Reads the config without importing torch (< 1 s),
so that a missing dataset is reported once, not by every process after torchrun's log.
"""

from __future__ import annotations

import importlib
import sys

from _common import check_data, filter_third_party_warnings, read_config


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ('train', 'test'):
        raise SystemExit('usage: python tools/_check_data.py {train|test} CONFIG [args...]')
    filter_third_party_warnings()
    args = importlib.import_module(argv[0]).parse_args(argv[1:])
    check_data(read_config(args.config, args.cfg_options, False), args.config, argv[0])


if __name__ == '__main__':
    main(sys.argv[1:])
