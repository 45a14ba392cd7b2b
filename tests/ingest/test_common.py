"""Helpers of ``weightlake.ingest.common`` that the ingesters share."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from weightlake.ingest.common import hash_rows, take_rows


@given(sizes=st.lists(st.integers(0, 6), max_size=6), data=st.data())
def test_take_rows_of_blocks_equals_the_mask_of_their_join(sizes, data):
    """The kept rows of consecutive blocks are the masked rows of the blocks joined, in order."""
    x = np.arange(sum(sizes) * 3, dtype=np.float32).reshape(-1, 3)
    blocks = np.split(x, np.cumsum(sizes)[:-1]) if sizes else []
    keep = np.array(data.draw(st.lists(st.booleans(), min_size=len(x), max_size=len(x))), dtype=bool)
    got = take_rows(blocks, keep)
    joined = np.concatenate(got) if got else np.empty((0, 3), np.float32)
    assert np.array_equal(joined, x[keep])
    assert all(len(b) for b in got)  # no empty blocks handed on


def test_hash_rows_is_the_same_for_a_block_and_its_pieces():
    x = np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32)
    assert hash_rows(x) == hash_rows(x[:3]) + hash_rows(x[3:])
    assert hash_rows(np.asfortranarray(x)) == hash_rows(x)


@pytest.mark.parametrize("name", ["my zoo", "a/b", "", "..", "zoo:1"])
def test_a_zoo_name_that_cannot_name_folders_is_refused_before_reading(tmp_path, name):
    """Found only at the commit before (after the whole parse), as 'partition value ...'."""
    from click.testing import CliRunner

    from weightlake.cli import main
    from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

    write_synthetic_csv(tmp_path / "z.csv", labels=all_labels(range(3), range(1, 3)), activations=("gelu",),
                        epochs=(11,), seed=1)
    for command in (["csv", str(tmp_path / "z.csv"), "--init", "kaiming_uniform"],
                    ["checkpoints", str(tmp_path), "--init", "kaiming_uniform"], ["modelzoo", str(tmp_path)]):
        result = CliRunner().invoke(main, ["ingest", *command, "--zoo", name, "--lake", str(tmp_path / "lake")])
        assert result.exit_code != 0 and "Traceback" not in result.output, result.output
        if name:  # click refuses nothing for ''; ours does
            assert f"zoo name {name!r} may hold only letters, digits" in result.output, (command, result.output)
        assert not (tmp_path / "lake").exists()
