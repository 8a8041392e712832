"""Two runs writing the same embedded task at once (two `zoo finetune` on the embedded
default, or two benchmark processes): the second writer must not delete the folder the
first is already reading. It did: a benchmark's two runs trained on different images."""

from __future__ import annotations

import os

from zoo_core.data import _embedded
from zoo_core.data._embedded import embedded_task


def test_a_second_writer_keeps_the_folder_the_first_wrote(tmp_path, monkeypatch):
    desc, make = _embedded.TASKS["digits5-9"]
    seen: dict[str, tuple[int, int]] = {}

    def racing(per_class, val_per_class, seed):
        # while this run generates, another run writes the same task and starts reading it
        monkeypatch.setitem(_embedded.TASKS, "digits5-9", (desc, make))
        other = embedded_task("digits5-9", 3, cache=tmp_path, val_per_class=2)
        for p in sorted(other.rglob("*.png")):
            st = p.stat()
            seen[str(p)] = (st.st_ino, st.st_size)
        return make(per_class, val_per_class, seed)

    monkeypatch.setitem(_embedded.TASKS, "digits5-9", (desc, racing))
    root = embedded_task("digits5-9", 3, cache=tmp_path, val_per_class=2)
    assert len(seen) == 5 * (3 + 2)
    # the other run's files are still there, the very same files (not deleted and rewritten)
    for path, (ino, size) in seen.items():
        st = os.stat(path)
        assert (st.st_ino, st.st_size) == (ino, size)
    assert sorted(str(p) for p in root.rglob("*.png")) == sorted(seen)
    # and no temporary folder is left behind
    assert [p.name for p in tmp_path.iterdir()] == [root.name]
