"""The GPU benchmark's CPU smoke test: the real architectures shrunk ('--scale tiny') build, search and are
measured without error, so a session that is lent a GPU spends its minutes measuring, not debugging."""

from benchmarks.bench_gpu import main


def test_bench_gpu_runs_every_family_at_tiny_scale(tmp_path):
    rows = main(["--scale", "tiny", "--families", "sd15,sdxl,flux", "--steps", "2", "--device", "cpu",
                 "--out", str(tmp_path / "gpu.json")])
    assert [r["family"] for r in rows] == ["sd15", "sdxl", "flux"]
    for row in rows:
        assert "error" not in row, row.get("trace")
        assert row["dtype_auto"] == "float32" and row["max_batch_auto"] == 64  # CPU: float32, chunks of 64
        assert row["bon4x_nfe"] == row["bon4x_overlap_nfe"] > 0 and row["forward_s_batch1"] > 0
    assert (tmp_path / "gpu.json").stat().st_size > 100
