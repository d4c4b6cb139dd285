"""Seeded end-to-end quality: the baseline learns moons."""

from straightflow.evaluate import evaluate
from straightflow.run import Run
from straightflow.training import train


def test_baseline_on_moons_reaches_the_two_sample_floor(tmp_path):
    out = train(data="moons", method="rectified", steps=3000, batch_size=256, seed=0, out=str(tmp_path / "moons"),
                progress=False)
    report = evaluate(Run.load(out), [1, 100], n=2000)
    by_nfe = {r["nfe"]: r for r in report["results"]}
    # W2 at NFE 100 within 0.1 of the W2 between two independent true samples
    assert abs(by_nfe[100]["w2"] - report["w2_floor"]) < 0.1, report
    # and the unbiased statistic agrees that NFE 100 is close to the truth, NFE 1 is not
    assert by_nfe[100]["energy"] < 0.01 < by_nfe[1]["energy"]
    assert by_nfe[1]["w2"] > 3 * by_nfe[100]["w2"]
