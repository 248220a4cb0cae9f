"""Error rates and cost of the v3 study's sequential design, by simulation (issue 26).

    python tools/study_design.py [--sims 20000] [--seed 0] [--new-aggregators 1]
        [--sd-scale 1 1.5] [--minutes-per-run 4.5]

Reads the planning SDs from the committed runs (``--paper``, ``--vindr``: the converged
pilot; ``--six-epoch``: the 6-epoch study, whose fusion-vs-fusion paired differences are
the only ones measured so far), simulates the rules of docs/study_v3_design.md
(:mod:`earl_core.study.sequential`) under scenarios of true differences, and prints
Markdown tables: each question's probability of each answer, the runs a study costs and
the machine-hours at ``--minutes-per-run``; then the power of the ablations' paired
comparisons. Deterministic for a given ``--seed``; numpy and scipy only, no training.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence

from earl_core.study import sequential as sq

#: The challengers of question (a) besides NA, and of (c) besides WBF + EARL.
FUSION = ('wbf', 'mv', 'em-earl', 'presence-em-earl', 'wbf-soft', 'wbf-ignore')
#: The new ablation methods of the study tool (earl_core.study.benchmark.ABLATION_METHODS).
ABLATIONS = 4
#: The 6-epoch study's fusion methods with 5 paired seeds (p = 0.8, 6 epochs).
SIX_EPOCH_FUSION = ('wbf', 'wbf-earl', 'em-earl', 'mv')


def _runs(path: str, proficiency: float | None = None, epochs: int | None = None) -> list:
    try:
        with open(path) as f:
            runs = json.load(f)['runs']
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f'{path}: not a results.json of the study tool ({e!r})') from e
    return [
        r
        for r in runs
        if (proficiency is None or r['proficiency'] == proficiency)
        and (epochs is None or r['epochs'] == epochs)
    ]


def planning_inputs(paper: str, vindr: str, six_epoch: str) -> dict:
    """The measured SDs the simulation starts from, with where each comes from."""
    out = {}
    p_runs, v_runs = _runs(paper), _runs(vindr)
    for key, path, runs in (('d_paper', paper, p_runs), ('d_vindr', vindr, v_runs)):
        try:
            out[key] = (*sq.paired_sd(runs, 'wbf-earl', 'na'), path)
        except ValueError as e:
            raise ValueError(f'{path}: {e}') from e
    out['earl_paper'] = (*sq.seed_sd(p_runs, 'wbf-earl'), paper)
    six = _runs(six_epoch, 0.8, 6)
    try:
        ff = [sq.paired_sd(six, a, b) for a, b in itertools.combinations(SIX_EPOCH_FUSION, 2)]
        na = [sq.paired_sd(six, m, 'na') for m in SIX_EPOCH_FUSION]
    except ValueError as e:
        raise ValueError(f'{six_epoch} (p = 0.8, 6 epochs): {e}') from e
    out['fusion_fusion'] = (statistics.median(s for s, _ in ff), min(n for _, n in ff), six_epoch)
    out['fusion_na'] = (statistics.median(s for s, _ in na), min(n for _, n in na), six_epoch)
    return out


def method_sds(inputs: dict) -> tuple[dict, dict, float]:
    """Per-method seed SDs (independent across methods) that reproduce the measured paired
    SDs: every fusion method sd_ff / sqrt(2) on the vindr-like preset, NA the rest of the
    measured WBF + EARL - NA variance; on the paper's raters WBF + EARL its own seed SD."""
    sf = inputs['fusion_fusion'][0] / math.sqrt(2)
    vindr = {'na': math.sqrt(max(inputs['d_vindr'][0] ** 2 - sf**2, 0.0))}
    earl = inputs['earl_paper'][0]
    paper = {'wbf-earl': earl, 'na': math.sqrt(max(inputs['d_paper'][0] ** 2 - earl**2, 0.0))}
    return vindr, paper, sf


def vindr_scenarios(new: int) -> tuple[list, list, list, tuple[str, ...]]:
    others = FUSION + tuple(f'new-{i + 1}' for i in range(new))
    qa = sq.Superiority('a', 'wbf-earl', ('na', *others))
    qc = sq.Superiority('c', 'na', ('wbf-earl', *others))
    qb = sq.Versus('b', 'wbf-earl', 'na')
    scenarios = [
        ('all methods equal', {}),
        ('one fusion method +0.02 (NA = WBF + EARL)', {'mv': 0.02}),
        ('NA +0.02, fusion methods equal', {'na': 0.02}),
        ('NA and one fusion method +0.02', {'na': 0.02, 'mv': 0.02}),
        (
            'pilot-like: NA +0.024, other fusion methods -0.01',
            {'na': 0.024, **dict.fromkeys(others, -0.01)},
        ),
    ]
    return [qa, qc], [qb], scenarios, others


def _pct(x: float) -> str:
    return f'{x:.3f}'


def _runs_cell(r: dict, minutes: float) -> tuple[str, str]:
    runs = r['runs']
    return (
        f'{runs["mean"]:.0f} ({runs["p10"]:.0f}-{runs["p90"]:.0f})',
        f'{runs["mean"] * minutes / 60:.1f}',
    )


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--paper', default='docs/results_study_paper.json')
    p.add_argument('--vindr', default='docs/results_study_vindr.json')
    p.add_argument('--six-epoch', default='docs/results_medmnist.json')
    p.add_argument('--sims', type=int, default=20_000, help='simulated studies per row')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument(
        '--new-aggregators', type=int, default=1, help='challengers beyond the seven named'
    )
    p.add_argument(
        '--sd-scale', type=float, nargs='+', default=[1.0, 1.5],
        help='multiply every planning SD (1.5: about the 80 %% upper bound of a 5-seed SD)',
    )  # fmt: skip
    p.add_argument('--minutes-per-run', type=float, default=4.5)
    default = sq.Design()
    p.add_argument('--n1', type=int, default=default.n1, help='stage-1 replicates')
    p.add_argument('--n-min', type=int, default=default.n_min, help='fewest in stage 2')
    p.add_argument('--n-cap', type=int, default=default.n_cap, help='most replicates')
    p.add_argument('--drop-level', type=float, default=default.drop_level, help='drop rule level')
    p.add_argument('--max-survivors', type=int, help='stage-2 challengers per question')
    args = p.parse_args(argv)
    if args.sims < 100 or args.new_aggregators < 0 or min(args.sd_scale) <= 0:
        p.error('need --sims >= 100, --new-aggregators >= 0, --sd-scale > 0')
    try:
        design = sq.Design(
            n1=args.n1,
            n_min=args.n_min,
            n_cap=args.n_cap,
            drop_level=args.drop_level,
            max_survivors=args.max_survivors,
        )
    except ValueError as e:
        p.error(str(e))
    try:
        inputs = planning_inputs(args.paper, args.vindr, args.six_epoch)
    except ValueError as e:
        p.error(str(e))
    vindr_sd, paper_sd, sf = method_sds(inputs)
    sup, versus, scenarios, others = vindr_scenarios(args.new_aggregators)
    t0 = time.time()
    command = 'python tools/study_design.py ' + ' '.join(sys.argv[1:] if argv is None else argv)
    lines = [
        f'Generated by `{command.strip()}` on {time.strftime("%Y-%m-%d")}; '
        f'{args.sims:,} simulated studies per row, seed {args.seed}.',
        '',
        '**Planning SDs** (mAP@[.5:.95], recomputed from the committed runs):',
        '',
        '| quantity | SD | seeds | source |',
        '|---|---|---|---|',
    ]
    names = dict(
        d_paper='WBF + EARL − NA, paired, paper raters p = 0.7',
        d_vindr='WBF + EARL − NA, paired, vindr-like raters',
        earl_paper='WBF + EARL alone, paper raters p = 0.7',
        fusion_fusion='fusion − fusion, paired, median of 6 pairs (6-epoch study)',
        fusion_na='fusion − NA, paired, median of 4 pairs (6-epoch study)',
    )
    for key, (sd, n, src) in inputs.items():
        lines.append(f'| {names[key]} | {sd:.4f} | {n} | `{src}` |')
    lines += [
        '',
        f'Per-method SDs simulated (independent across methods): vindr-like, every fusion '
        f'method {sf:.4f}, NA {vindr_sd["na"]:.4f}; paper raters, WBF + EARL '
        f'{paper_sd["wbf-earl"]:.4f}, NA {paper_sd["na"]:.4f}. Design: {design}.',
        '',
        f'**Vindr-like preset, questions (a), (b), (c)** ({len(sup[0].challengers)} challengers '
        f'in (a): NA, {", ".join(others)}):',
        '',
        '| true differences (vs WBF + EARL) | SD × | (a) yes | (a) no | (a) not shown '
        '| (c) yes | (c) no | (c) not shown | (b) better / worse / equivalent / not shown '
        '| survivors (a) / (c) | n at the cap | runs, mean (p10-p90) | machine-h |',
        '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for scale in args.sd_scale:
        sds = dict.fromkeys(['wbf-earl', *others], sf * scale) | {'na': vindr_sd['na'] * scale}
        for name, means in scenarios:
            r = sq.simulate(
                sq.Scenario(name, sds, means), sup, versus, design, args.sims, args.seed
            )
            a, c, b = (r['questions'][k] for k in ('a', 'c', 'b'))
            runs, hours = _runs_cell(r, args.minutes_per_run)
            lines.append(
                f'| {name} | {scale:g} | {_pct(a["yes"])} | {_pct(a["no"])} | '
                f'{_pct(a["not shown"])} | {_pct(c["yes"])} | {_pct(c["no"])} | '
                f'{_pct(c["not shown"])} | '
                + ' / '.join(_pct(b[o]) for o in sq.VERSUS_OUTCOMES)
                + f' | {a["survivors"]:.1f} / {c["survivors"]:.1f} | {_pct(r["capped"])} '
                f'| {runs} | {hours} |'
            )
    lines += [
        '',
        '**Paper raters p = 0.7, question (b)** (NA and WBF + EARL only):',
        '',
        '| true WBF + EARL − NA | SD × | better | worse | equivalent | not shown '
        '| stopped at the interim | n at the cap | runs, mean (p10-p90) | machine-h |',
        '|---|---|---|---|---|---|---|---|---|---|',
    ]
    for scale in args.sd_scale:
        sds = {m: s * scale for m, s in paper_sd.items()}
        for delta in (-0.02, -0.01, 0.0, 0.01, 0.02):
            r = sq.simulate(
                sq.Scenario(f'{delta:+g}', sds, {'wbf-earl': delta}), [], versus, design,
                args.sims, args.seed,
            )  # fmt: skip
            b = r['questions']['b']
            runs, hours = _runs_cell(r, args.minutes_per_run)
            lines.append(
                f'| {delta:+.2f} | {scale:g} | '
                + ' | '.join(_pct(b[o]) for o in sq.VERSUS_OUTCOMES)
                + f' | {_pct(b["interim_stop"])} | {_pct(r["capped"])} | {runs} | {hours} |'
            )
    ff = inputs['fusion_fusion'][0]
    lines += [
        '',
        f'**Ablations** (item 3): power of one paired comparison with WBF + EARL, seed SD of '
        f'the difference {ff:.4f} (fusion − fusion): one-sided t-test at 0.025, and at '
        f'0.025 / {ABLATIONS} (the first step of Holm over the {ABLATIONS} new ablations):',
        '',
        '| true difference | level | n = 5 | n = 8 | n = 10 | n = 15 |',
        '|---|---|---|---|---|---|',
    ]
    for delta in (0.013, 0.02, 0.024):
        for level, name in ((0.025, '0.025'), (0.025 / ABLATIONS, f'0.025 / {ABLATIONS}')):
            cells = ' | '.join(_pct(sq.t_power(delta, ff, n, level)) for n in (5, 8, 10, 15))
            lines.append(f'| +{delta:.3f} | {name} | {cells} |')
    lines += ['', f'({time.time() - t0:.0f} s)']
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
