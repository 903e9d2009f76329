"""A workload's owner owns what its pipeline makes; the audit still names who acted."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize("owner", ["risk-ml@example.com", None])
def test_pipeline_assets_belong_to_the_spec_owner(ws, project: Path, owner: str | None) -> None:
    (project / "tx.csv").write_text("id,v\n1,1\n2,2\n")
    lines = ["name: owned"]
    if owner:
        lines.append(f"owner: {owner}")
    lines += [
        "sources:",
        "  tx: {path: tx.csv}",
        "features:",
        "  doubled: {sql: 'SELECT id, v * 2 AS v FROM tx', inputs: [tx]}",
    ]
    (project / "loopml.yaml").write_text("\n".join(lines) + "\n")
    result = ws.pipelines.run(project / "loopml.yaml")
    assert result.status == "succeeded"
    expected = owner or ws.actor
    for name in ("tx", "doubled"):
        assert ws.data.get(name).owner == expected
    owners = {d.name: d.owner for d, _, _ in ws.data.ls()}
    assert owners == {"tx": expected, "doubled": expected}
    assert ws.pipelines.runs()[0]["owner"] == expected
    actors = {e.actor for e in ws.audit.ls(action="dataset.transform")}
    assert actors == {ws.actor}
