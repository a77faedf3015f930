"""The large-history solver: conjugate gradients over row chunks, against the closed form."""

import os
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from bsky_assets.successor.ridge import Chunks, compact, solve_ridge

ALPHAS = np.array([0.3, 1.0, 3.0])
USES_DENSE = np.array([False, True, True])


def problem(rows: int = 600, sparse_width: int = 40, dense_width: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = sparse.random(rows, sparse_width, density=0.2, random_state=seed, dtype=np.float32)
    x = x.tocsr()
    e = rng.standard_normal((rows, dense_width)).astype(np.float32)
    targets = rng.standard_normal((rows, 3)).astype(np.float32)
    masks = (rng.random((rows, 3)) > 0.3).astype(np.float32)
    return x, e, targets * masks, masks


def chunked(x, e, targets, masks, block: int, spill: bool = False, compacted: bool = False):
    chunks = Chunks(spill=spill)
    parts_t, parts_m = [], []
    for start in range(0, x.shape[0], block):
        part = slice(start, start + block)
        if compacted:
            local, columns = compact(x[part])
            chunks.add(local, e[part], columns)
        else:
            chunks.add(x[part], e[part])
        parts_t.append(targets[part])
        parts_m.append(masks[part])
    return chunks, parts_t, parts_m


def closed_form(x, e, targets, masks) -> np.ndarray:
    full = np.hstack([x.toarray(), e]).astype(np.float64)
    columns = []
    for k, alpha in enumerate(ALPHAS):
        features = full if USES_DENSE[k] else full[:, : x.shape[1]]
        weighted = features * masks[:, [k]]
        solution = np.linalg.solve(
            weighted.T @ features + alpha * np.eye(features.shape[1]), weighted.T @ targets[:, k]
        )
        if not USES_DENSE[k]:
            solution = np.concatenate([solution, np.zeros(e.shape[1])])
        columns.append(solution)
    return np.column_stack(columns)


def solve(chunks, parts_t, parts_m, x, e, **kwargs):
    options = {"max_iterations": 500, "tolerance": 1e-7, **kwargs}
    return solve_ridge(
        chunks, parts_t, parts_m, x.shape[1], e.shape[1], ALPHAS, USES_DENSE, **options
    )


def test_each_column_is_its_own_masked_ridge_with_its_own_alpha():
    x, e, targets, masks = problem()
    chunks, parts_t, parts_m = chunked(x, e, targets, masks, block=128)
    weights, iterations = solve(chunks, parts_t, parts_m, x, e)
    assert 0 < iterations < 500
    np.testing.assert_allclose(weights, closed_form(x, e, targets, masks), atol=2e-4)
    assert not weights[x.shape[1] :, 0].any()  # the column without the dense block


@pytest.mark.parametrize("spill", [False, True])
def test_threads_and_spilling_do_not_change_a_single_weight(spill):
    """Chunks are summed in their order whatever the threads, so a model does not depend on
    the cores its run was given, nor on whether its features fitted in memory."""
    x, e, targets, masks = problem()
    reference, _ = solve(*chunked(x, e, targets, masks, block=100), x, e, threads=1)
    other, _ = solve(*chunked(x, e, targets, masks, block=100, spill=spill), x, e, threads=2)
    assert np.array_equal(reference, other)


@pytest.mark.parametrize("spill", [False, True])
def test_chunks_on_their_own_columns_give_the_same_weights_bit_for_bit(spill):
    """The distil stores each block on the columns it uses (`compact`): its products are a few
    per cent of the width, and the sums they add into are the same, in the same order."""
    x, e, targets, masks = problem(rows=800, sparse_width=400)
    x = sparse.csr_matrix(x.multiply(np.arange(400) % 7 == 0) + x.multiply(np.arange(400) < 9))
    wide, _ = solve(*chunked(x, e, targets, masks, block=100), x, e, threads=1)
    narrow = chunked(x, e, targets, masks, block=100, spill=spill, compacted=True)
    assert all(len(c.columns) < x.shape[1] / 2 for c in narrow[0])
    local, _ = solve(*narrow, x, e, threads=2)
    assert np.array_equal(wide, local)
    np.testing.assert_allclose(wide, closed_form(x, e, targets, masks), atol=2e-4)


def test_a_warm_start_at_the_solution_stops_at_once_and_near_it_stops_sooner():
    x, e, targets, masks = problem()
    chunks, parts_t, parts_m = chunked(x, e, targets, masks, block=128)
    cold, cold_iterations = solve(chunks, parts_t, parts_m, x, e, tolerance=1e-5)
    _, at_solution = solve(chunks, parts_t, parts_m, x, e, tolerance=1e-3, initial=cold)
    assert at_solution == 0
    # the solution on 90 % of the rows: what the distil's refit starts from
    fewer = masks.copy()
    fewer[::10] = 0
    near, _ = solve(*chunked(x, e, targets * fewer, fewer, block=128), x, e, tolerance=1e-5)
    warm, warm_iterations = solve(chunks, parts_t, parts_m, x, e, tolerance=1e-5, initial=near)
    assert warm_iterations < cold_iterations
    np.testing.assert_allclose(warm, cold, atol=1e-3)


def test_chunks_move_to_disk_past_their_limit_and_drain_gives_each_back():
    x, e, _, _ = problem()
    chunks = Chunks(limit=x[:250].nnz)
    for start in range(0, x.shape[0], 100):
        chunks.add(x[start : start + 100], e[start : start + 100])
    assert chunks.spilled and len(chunks) == 6 and chunks.nonzeros == x.nnz
    folder = chunks._folder.name
    drained = list(chunks.drain())
    assert (sparse.vstack([c.matrix for c in drained]) != x).nnz == 0
    assert np.array_equal(np.vstack([c.dense for c in drained]), e)
    assert not Path(folder).exists()


def test_a_killed_distils_spill_folder_is_swept_by_the_next_and_a_live_ones_is_kept(
    tmp_path, monkeypatch
):
    """A SIGKILL skips a TemporaryDirectory's cleanup; at 1,000,000 texts the folder is 3 GB.
    Liveness is the owner's lock, not its process id: a pid from another namespace (a
    container sharing /tmp) may be dead here while its owner runs, or alive and unrelated."""
    import fcntl
    import signal
    import subprocess
    import sys
    import tempfile

    from bsky_assets.successor.ridge import OWNER_LOCK, SPILL_PREFIX, remove_stale_spills

    spill = (
        "import sys, time, tempfile; tempfile.tempdir = sys.argv[1];"
        "from bsky_assets.successor.ridge import Chunks;"
        "c = Chunks(spill=True); print(c._folder.name, flush=True); time.sleep(120)"
    )

    def spilling() -> tuple[subprocess.Popen, Path]:
        child = subprocess.Popen(
            [sys.executable, "-c", spill, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        return child, Path(child.stdout.readline().strip())

    killed, killed_folder = spilling()
    live, live_folder = spilling()
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        # named after a process that has ended, its lock held elsewhere (another namespace)
        elsewhere = tmp_path / f"{SPILL_PREFIX}{killed.pid}-elsewhere"
        elsewhere.mkdir()
        unlocked = tmp_path / f"{SPILL_PREFIX}nolock"
        (unlocked / "0").mkdir(parents=True)
        assert killed_folder.is_dir() and (killed_folder / OWNER_LOCK).exists()
        with open(elsewhere / OWNER_LOCK, "wb") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            assert remove_stale_spills(tmp_path) == [killed_folder]
            assert not killed_folder.exists()
            assert live_folder.is_dir() and elsewhere.is_dir() and unlocked.is_dir()
        assert remove_stale_spills(tmp_path) == [elsewhere]
    finally:
        live.kill()
        live.wait()
    assert remove_stale_spills(tmp_path) == [live_folder]
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    chunks = Chunks(spill=True)
    folder = Path(chunks._folder.name)
    assert folder.parent == tmp_path and folder.name.startswith(f"{SPILL_PREFIX}{os.getpid()}-")
    assert remove_stale_spills(tmp_path) == [] and folder.is_dir()
    chunks.close()
    assert not folder.exists()
