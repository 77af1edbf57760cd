"""Takes `winback simulate`'s per-arm estimates apart against the generator's truth.

Usage (the reference's venv has polars and numpy; `bench/side_by_side.py`
makes it under ~/.cache/winback/pyref on first use):

    winback generate --subscribers 200000 --seed 22 --out DATA
    winback run --config CONFIG --data DATA --out OUT
    ~/.cache/winback/pyref/bin/python bench/truth_decomposition.py DATA OUT

For the eligible subscribers of OUT's target list, weighted by the true
P(return) of each arm, it prints the estimated against the true monthly
margin (the generator's margin is 0.459 times the fee: usage, bill shocks
and the cost to serve in `pipeline/generate/history.rs`, averaged here by
simulation), P(return) and discounted months of a second lifetime (value
over margin; the estimated value is the net value plus the offer's true
cost, which during an offer's term, when the generator forbids churn, is
the model's too); the discounted months' error by unsatisfied complaints and
earlier defections; and, as a check of the generator itself, the history's
realised second lifetimes (Kaplan-Meier weighted by margin) against the
generator's expected value per returner (`truth.json`). Every figure is
out of sample: the pipeline never reads the truth files.
"""

import json
import sys

import numpy as np
import polars as pl

ARMS = ["control", "discount", "upgrade", "both", "tailored"]


def margin_per_fee(draws: int = 2_000_000) -> float:
    """E[margin] / fee of one billed month, as `run_lifetime` draws it."""
    rng = np.random.default_rng(0)
    usage = np.exp(0.08 * rng.standard_normal(draws) - 0.0032)
    shock = rng.random(draws) < 0.025
    usage = np.where(shock, usage * rng.uniform(1.6, 2.5, draws), usage)
    cost = 0.55 * rng.uniform(0.9, 1.1, draws) + 0.3 * np.maximum(usage - 1.0, 0.0)
    return float((usage - cost).mean())


def main(data: str, out: str) -> None:
    k = margin_per_fee()
    economics = json.load(open(f"{data}/truth.json"))["parameters"]["economics"]
    monthly = (1.0 + economics["annual_discount_rate"]) ** (1.0 / 12.0) - 1.0
    horizon = economics["horizon_months"]
    factors = np.array([(1.0 + monthly) ** -t for t in range(1, horizon + 1)])
    subs = pl.read_parquet(f"{data}/subscribers.parquet").select("subscriber_id", "monthly_fee")
    targets = pl.read_parquet(f"{out}/simulate/target_list.parquet")
    truth = pl.read_parquet(f"{data}/truth_lapsed.parquet")
    lapsed = pl.read_parquet(f"{out}/features/lapsed.parquet")
    j = (
        targets.join(truth, on="subscriber_id", suffix="_true")
        .join(subs, on="subscriber_id")
        .join(
            lapsed.select("subscriber_id", "churned_at", "complaints_unsatisfied", "earlier_defections"),
            on=["subscriber_id", "churned_at"],
            how="left",
        )
    )
    print(f"{j.height} eligible subscribers; generator's margin per fee {k:.4f}")
    print(f"{'arm':9} {'margin est':>10} {'true':>7} {'err':>7}   {'P(return) est':>13} {'true':>7} {'err':>7}   {'disc. months est':>16} {'true':>7} {'err':>7}")
    for a in ARMS:
        w = j[f"p_return_{a}_true"] / j[f"p_return_{a}_true"].sum()
        m_est, m_true = j[f"monthly_margin_{a}"], k * j["monthly_fee"]
        gross_est = j[f"second_lifetime_net_value_{a}"] + j[f"offer_cost_{a}"]
        d_est, d_true = (w * gross_est / m_est).sum(), (w * j[f"value_{a}"] / m_true).sum()
        me, mt = (w * m_est).sum(), (w * m_true).sum()
        pe, pt = j[f"p_return_{a}"].mean(), j[f"p_return_{a}_true"].mean()
        print(
            f"{a:9} {me:10.2f} {mt:7.2f} {me / mt - 1:+7.3f}   {pe:13.4f} {pt:7.4f} {pe / pt - 1:+7.3f}   "
            f"{d_est:16.2f} {d_true:7.2f} {d_est / d_true - 1:+7.3f}"
        )
    # The control arm's discounted months by subscriber history.
    j = j.with_columns(
        pl.col("p_return_control_true").alias("w"),
        ((pl.col("second_lifetime_net_value_control")) / pl.col("monthly_margin_control")).alias("d_est"),
        (pl.col("value_control") / (k * pl.col("monthly_fee"))).alias("d_true"),
    )
    for key in ["complaints_unsatisfied", "earlier_defections"]:
        g = (
            j.with_columns(pl.col(key).clip(0, 4).alias("group"))
            .group_by("group")
            .agg(
                pl.len().alias("subscribers"),
                ((pl.col("w") * pl.col("d_est")).sum() / pl.col("w").sum()).alias("est"),
                ((pl.col("w") * pl.col("d_true")).sum() / pl.col("w").sum()).alias("true"),
            )
            .with_columns((pl.col("est") / pl.col("true") - 1).alias("err"))
            .sort("group")
        )
        print(f"control, discounted months by {key} (4: four or more):")
        for r in g.iter_rows(named=True):
            print(f"  {r['group']}: {r['subscribers']:5} subscribers, {r['est']:6.2f} vs {r['true']:6.2f} ({r['err']:+.3f})")
    # The generator against its own history.
    second = pl.read_parquet(f"{out}/features/second_lifetime.parquet").join(subs, on="subscriber_id")
    arms = {a["arm"]: a["value_per_returner"] for a in json.load(open(f"{data}/truth.json"))["arms"]}
    print("the history's second lifetimes (Kaplan-Meier weighted by margin) against truth.json, per returner:")
    for a in ARMS:
        g = second.filter(pl.col("won_back_by") == a)
        bills = g["second_lifetime_bills"].to_numpy()
        censored = g["censored"].to_numpy()
        m = k * g["monthly_fee"].to_numpy()
        alive, value = 1.0, 0.0
        for t in range(1, horizon + 1):
            value += factors[t - 1] * alive
            at_risk = bills >= t
            ended = (bills == t) & ~censored
            alive *= 1.0 - m[ended].sum() / max(m[at_risk].sum(), 1e-9)
        realised = m.mean() * value
        print(f"  {a:9} {g.height:6} returns: realised {realised:7.1f}, truth {arms[a]:7.1f} ({realised / arms[a] - 1:+.3f})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
