"""SearchTree.plot_data: what the demo draws (verified nodes, survivors, the winner's lineage)."""

import pytest
from tiny_pipelines import tiny_sd

from rd_inference import BrightnessVerifier, search


@pytest.fixture(scope="module")
def pipe():
    return tiny_sd()


def test_search_over_paths_plot_data(pipe):
    res = search(pipe, "two red circles", verifier=BrightnessVerifier(), strategy="sop", n=2, m=2, steps=6,
                 sigma_start=0.4, delta_f=0.3, delta_b=0.5, seed=3)
    data = res.tree.plot_data(res.node_id)
    verified = [n for n in res.tree.nodes if n.score is not None]
    assert [p["id"] for p in data["points"]] == [n.id for n in verified]
    status = {p["id"]: p["status"] for p in data["points"]}
    assert [i for i, s in status.items() if s == "chosen"] == [res.node_id]
    lineage = {n.id for n in res.tree.lineage(res.node_id)} - {res.node_id}
    assert {i for i, s in status.items() if s == "lineage"} == {i for i in lineage if res.tree[i].score is not None}
    assert {i for i, s in status.items() if s == "pruned"} == {n.id for n in verified if not n.kept} - lineage
    # Round 1 branches hang off unverified initial paths: no edge; later rounds join to their parent.
    rounds = max(n.round for n in verified)
    assert rounds >= 2
    assert len(data["edges"]) == sum(1 for n in verified if n.round >= 2)
    for e in data["edges"]:
        child, parent = res.tree[e["child"]], res.tree[e["parent"]]
        assert child.parent == parent.id and parent.kept and e["x"] == (parent.round, child.round)
    assert any(e["status"] == "pruned" for e in data["edges"])
    assert any(e["status"] == "lineage" for e in data["edges"])


def test_best_of_n_plot_data_has_no_edges(pipe):
    res = search(pipe, "two red circles", verifier=BrightnessVerifier(), strategy="bon", n=3, steps=3)
    data = res.tree.plot_data(res.node_id)
    assert data["edges"] == []
    assert sorted(p["status"] for p in data["points"]) == ["chosen", "pruned", "pruned"]
    assert {p["round"] for p in data["points"]} == {0}
