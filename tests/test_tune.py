"""The measured kernel choices (rnncli/kernels/cpu/tune.py): the choice is kept per CPU and read back,
and a bad or foreign file is measured again with a note. (Every path, forced, against the reference through
the sequence drivers: tests/test_kernels.py.)"""

import json

import pytest

from rnncli.kernels.cpu import gemm, packed, steps, tune

SHAPE = (8, 512, 128, 1)  # M rows a thread, N outputs, K inputs, threads: above tune.SMALL


@pytest.fixture
def tuning(tmp_path, monkeypatch):
    """A fresh tuning file (the compiled kernels stay where they are), tuning on, and what the tuner
    says to people."""
    monkeypatch.setattr(tune, "path_file", lambda: tmp_path / "tune.json")
    monkeypatch.setenv("RNNCLI_TUNE", "1")
    said = []
    monkeypatch.setattr(tune, "notes", said.append)
    tune.reset()
    yield said
    tune.reset()


def test_a_shape_is_measured_once_kept_and_read_back(tuning, monkeypatch):
    first = tune.path(*SHAPE)
    data = json.loads(tune.path_file().read_text())
    assert data["cpu"] == tune.cpu_key() and data["paths"] == {"8,512,128,1": gemm.PATHS[first]}
    assert not tuning  # (silent: a first run's compiling notice covers it)
    monkeypatch.setattr(tune, "measure", lambda *a: pytest.fail("measured again"))
    assert tune.path(*SHAPE) == first
    tune.reset()  # a later run reads the file
    assert tune.path(*SHAPE) == first
    # and what the file says is what the kernels get
    data["paths"]["8,512,128,1"] = "rows4"
    tune.path_file().write_text(json.dumps(data))
    tune.reset()
    assert tune.path(*SHAPE) == gemm.ROWS4


def test_small_shapes_and_no_tune_take_the_rule(tuning, monkeypatch):
    monkeypatch.setattr(tune, "measure", lambda *a: pytest.fail("measured"))
    assert tune.path(4, 64, 64, 2) == gemm.rule(64, 64)  # too small to time
    monkeypatch.setenv("RNNCLI_TUNE", "0")
    assert tune.path(*SHAPE) == gemm.rule(512, 128) and not tune.path_file().exists()


@pytest.mark.parametrize(
    "content,said",
    [
        ("{not json", "cannot be read"),
        (json.dumps({"format": tune.FORMAT, "cpu": "x", "paths": {"8,512,128,1": "fastest"}}), "malformed"),
        (
            json.dumps({"format": tune.FORMAT - 1, "cpu": "x", "paths": {"8,512,128,1": "rows4"}}),
            "earlier rnncli",
        ),
        (
            json.dumps(
                {
                    "format": tune.FORMAT,
                    "cpu": "Some Other CPU (family 1 model 2); 4 float32 lanes",
                    "paths": {"8,512,128,1": "rows4"},
                }
            ),
            "another CPU",
        ),
    ],
)
def test_a_corrupt_or_foreign_file_is_measured_again_with_a_note(tuning, content, said):
    tune.path_file().write_text(content)
    got = tune.path(*SHAPE)
    assert said in tuning[0]
    data = json.loads(tune.path_file().read_text())  # replaced by this CPU's
    assert data["cpu"] == tune.cpu_key() and data["paths"] == {"8,512,128,1": gemm.PATHS[got]}


def test_the_measurement_keeps_the_rule_unless_another_path_is_clearly_faster(monkeypatch):
    ruled = int(gemm.rule(512, 128))
    _timed(monkeypatch, dict.fromkeys(range(len(gemm.PATHS)), 1.0))  # every path takes the same time
    assert tune.measure(*SHAPE) == ruled


def test_the_rules_tile_is_the_one_the_compiling_cpus_registers_hold(monkeypatch):
    """Eight rows of W (16 accumulators) with 32 vector registers, four with 16: fixed when the
    kernels are compiled, for the CPU they are compiled for."""
    assert gemm.rule(512, 2048) == (gemm.ROWS if gemm.vector_registers() >= 32 else gemm.ROWS4)
    monkeypatch.setattr(packed.llvm, "get_process_triple", lambda: "x86_64-unknown-linux-gnu")
    monkeypatch.setattr(packed.config, "CPU_FEATURES", "+avx,+avx2,+fma,+avx512f,+avx512bw")
    assert gemm.vector_registers() == 32 and packed.target_vector_shape() == (16, 32)
    monkeypatch.setattr(packed.config, "CPU_FEATURES", "+avx,+avx2,+fma,-avx512f")
    assert gemm.vector_registers() == 16 and packed.target_vector_shape() == (8, 16)
    monkeypatch.setattr(packed.config, "CPU_FEATURES", "")  # NUMBA_CPU_NAME=generic: baseline x86-64
    assert gemm.vector_registers() == 16
    monkeypatch.setattr(packed.llvm, "get_process_triple", lambda: "aarch64-unknown-linux-gnu")
    assert gemm.vector_registers() == 32 and packed.target_vector_shape() == (4, 32)


def _timed(monkeypatch, seconds, slow_calls=0):
    """time_product taking seconds[path] a repetition on a fake clock, its first slow_calls calls 6x
    as long (a fresh process's first milliseconds)."""
    now, calls = [0.0], [0]

    def time_product(A, W, WT, C, path, reps, parts):
        calls[0] += 1
        now[0] += seconds[path] * reps * (6 if calls[0] <= slow_calls else 1)

    def time_columns(A, W, P, C, reps, parts):  # (P empty: BLAS)
        time_product(A, W, P, C, gemm.PACKED if len(P) else gemm.BLAS, reps, parts)

    monkeypatch.setattr(gemm, "time_product", time_product)
    monkeypatch.setattr(steps, "time_columns", time_columns)
    monkeypatch.setattr(tune, "clock", lambda: now[0])


@pytest.mark.parametrize("rows4,chosen", [(0.97, gemm.BLAS), (0.5, gemm.ROWS4)])
def test_a_near_tie_with_blas_goes_to_blas(monkeypatch, rows4, chosen):
    """Paths timed at BLAS 1.0, rows 2.0, rows4 `rows4`, cols 2.0, packed 2.0 (the rule's path for
    SHAPE is cols): a kernel within MARGIN of BLAS does not replace it; a clearly faster one does."""
    assert gemm.rule(512, 128) == gemm.COLS
    _timed(monkeypatch, {gemm.BLAS: 1.0, gemm.ROWS: 2.0, gemm.ROWS4: rows4, gemm.COLS: 2.0, gemm.PACKED: 2.0})
    assert tune.measure(*SHAPE) == chosen


def test_a_slow_start_does_not_decide(monkeypatch):
    """The first path timed in a fresh process ran several times slower than later (BLAS on a Zen 3):
    with the paths taking turns, each is timed again after the slow start, and BLAS keeps its win.
    (Timed one path after the other, BLAS's three timings all fell in it, and cols won.)"""
    times = {gemm.BLAS: 1.0, gemm.ROWS: 2.0, gemm.ROWS4: 1.6, gemm.COLS: 1.4, gemm.PACKED: 1.5}
    _timed(monkeypatch, times, slow_calls=6)
    assert tune.measure(*SHAPE) == gemm.BLAS


def test_products_taken_in_turn_are_measured_and_kept_apart(tuning, monkeypatch):
    """Generation's products (several weight matrices a step) get their own entries."""
    seen = []
    monkeypatch.setattr(tune, "measure", lambda *a: seen.append(a) or gemm.BLAS)
    assert tune.path(*SHAPE) == gemm.BLAS and tune.path(*SHAPE, 4, False) == gemm.BLAS
    assert seen == [SHAPE + (1, True, False), SHAPE + (4, False, False)]
    assert set(json.loads(tune.path_file().read_text())["paths"]) == {"8,512,128,1", "8,512,128,1,4w,flat"}


@pytest.mark.parametrize("packed_time,chosen", [(0.97, gemm.BLAS), (0.5, gemm.PACKED)])
def test_a_product_shared_by_columns_is_blas_or_packed(tuning, monkeypatch, packed_time, chosen):
    """The column split (large weights) times BLAS against the packed kernel alone, kept apart."""
    times = dict.fromkeys(range(len(gemm.PATHS)), 0.1)  # (the other paths, were they timed, would win)
    _timed(monkeypatch, times | {gemm.BLAS: 1.0, gemm.PACKED: packed_time})
    assert tune.path(*SHAPE, columns=True) == chosen
    assert json.loads(tune.path_file().read_text())["paths"] == {"8,512,128,1,cols": gemm.PATHS[chosen]}


def test_generation_never_gets_the_packed_path(tuning, monkeypatch):
    """Generation keeps no packed weights: its products are timed without that path."""
    _timed(monkeypatch, dict.fromkeys(range(len(gemm.PATHS)), 1.0) | {gemm.PACKED: 0.1})
    assert tune.path(*SHAPE, 1, False) != gemm.PACKED and tune.path(*SHAPE, 4, False) != gemm.PACKED
    assert tune.path(*SHAPE) == gemm.PACKED


def test_measuring_several_weight_matrices_runs_every_path(monkeypatch):
    assert tune.measure(4, 256, 160, 1, 3) in range(len(gemm.PATHS))


def test_bench_tune_forgets_the_measurements(tuning):
    tune.path(*SHAPE)
    tune.forget()
    assert not tune.path_file().exists()


def test_no_tune_on_the_command_line_takes_the_rule(tuning, monkeypatch, tmp_path):
    from tests.hostile import run_cli
    from tests.test_recipe import CORPUS

    monkeypatch.setattr(tune, "measure", lambda *a: pytest.fail("measured"))
    code, _, err = run_cli(
        "train",
        CORPUS,
        "--hidden",
        "200",
        "--steps",
        "1",
        "--recipe",
        "plain",
        "--no-tune",
        "--out",
        str(tmp_path / "m.st"),
    )
    assert code == 0, err
    assert not tune.path_file().exists()


def test_a_cache_folder_that_cannot_be_written_only_costs_a_remeasure(tuning, monkeypatch, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setattr(tune, "path_file", lambda: blocked / "tune.json")
    measured = []
    monkeypatch.setattr(tune, "measure", lambda *a: measured.append(a) or gemm.ROWS4)
    tune.path(*SHAPE)  # (no exception: the read already said it cannot be read)
    assert len(tuning) == 1 and "cannot be read" in tuning[0]
    assert tune.path(*SHAPE) == gemm.ROWS4 and len(measured) == 1  # kept for the rest of this run
    assert not blocked.is_dir() and blocked.read_text() == ""  # nothing written
    tune.reset()  # the next run measures again, and says so again
    tune.path(*SHAPE)
    assert len(measured) == 2 and len(tuning) == 2
