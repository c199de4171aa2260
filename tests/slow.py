"""The slowest tests of the default suite, marked ``slow`` by ``tests/conftest.py``.

``python -m pytest -q`` (pyproject's addopts: ``-m 'not slow'``) leaves them out; CI
(``.ci/run``) runs them too, with ``-m slow``. Chosen from ``python -m pytest -q
--durations=100`` (2026-12-03, a loaded 2-core machine: 66 min in all, these 16 took 1,751 s
of it); each covers a behaviour that a faster test also touches in part. The default suite
without them still took 13.6 min on the same machine idle (a fresh-clone CI run), so the
loaded durations overstated their share; the second pass below (17 tests that start fresh
processes, 800 s of the loaded durations) is chosen from the same list for the ~10 min target.
After it, a fresh-clone CI run on the idle machine took 631 s (10.5 min) for the default suite
and 866 s for these 35.
"""
from __future__ import annotations

from collections.abc import Iterable

SLOW_TESTS = frozenset({
    "tests/run/test_executors.py::test_parallel_executor_matches_local_bit_for_bit[ray]",
    "tests/run/test_executors.py::test_parallel_executor_matches_local_bit_for_bit[process]",
    "tests/strategies/test_registry.py::test_task_incremental_runs_or_refuses_clearly[gdumb]",
    "tests/strategies/test_registry.py::test_task_incremental_runs_or_refuses_clearly[sae-ception]",
    "tests/strategies/test_registry.py::test_strategy_runs_and_reports[sae-ception]",
    "tests/board/test_submit.py::test_files_run_with_other_settings_are_named",
    "tests/board/test_submit.py::test_a_forged_nonzero_seed_is_caught_when_the_verifier_picks_it",
    "tests/board/test_submit.py::test_bad_results_are_rejected[not-reproducible]",
    "tests/board/test_submit.py::test_a_method_cannot_switch_the_verifier_off",
    "tests/test_readme.py::test_method_example_is_accepted_by_submit",
    "tests/board/test_posthocs.py::test_cd_diagram_bytes_do_not_depend_on_the_hash_seed",
    "tests/strategies/test_sae_ception.py::test_runs_on_every_model_family_layer[convnextv2-head]",
    "tests/strategies/test_sae_ception.py::test_runs_on_every_model_family_layer[vit-cls]",
    "tests/strategies/test_sae_ception.py::test_runs_on_every_model_family_layer[vit-block2]",
    "tests/run/test_sigkill.py::test_sigkill_then_rerun_does_every_cell_exactly_once[local]",
    "tests/run/test_orphans.py::test_killed_driver_leaves_no_worker[SIGTERM]",
    # second pass (2026-12-03, after the default suite still took 13.6 min idle): tests that
    # each start one or more fresh Python processes importing torch and Avalanche (~10 s idle
    # apiece, most of it avalanche.benchmarks); a sibling of each stays in the default suite
    "tests/board/test_submit.py::test_untampered_from_results_are_accepted",
    "tests/board/test_submit.py::test_bad_results_are_rejected[schema]",
    "tests/board/test_submit.py::test_bad_results_are_rejected[stream-version]",
    "tests/board/test_submit.py::test_bad_results_are_rejected[direction]",
    "tests/board/test_submit.py::test_bad_results_are_rejected[other-data]",
    "tests/board/test_submit.py::test_bad_results_are_rejected[missing-file]",
    "tests/board/test_submit.py::test_a_board_holding_a_duplicate_is_refused_before_anything_runs",
    "tests/board/test_submit.py::test_resubmitting_is_refused",
    "tests/board/test_submit.py::test_file_must_register_exactly_one_new_strategy[taken-name]",
    "tests/board/test_submit.py::test_file_must_register_exactly_one_new_strategy[two]",
    "tests/board/test_submit.py::test_a_file_relabelled_from_another_method_is_refused[label]",
    "tests/board/test_submit.py::test_a_submitted_file_duplicating_a_board_result_is_refused",
    "tests/test_cli_interface.py::test_import_clbench_is_light_and_its_names_still_resolve",
    "tests/test_cli.py::test_user_error_from_a_real_process",
    "tests/data/test_text_real.py::test_module_examples_run[clbench.data.text_tasks]",
    "tests/test_reliability.py::test_two_concurrent_runs_run_each_cell_once",
    "tests/ci/test_sae_ception_protocol.py::test_a_tiny_protocol_runs_end_to_end",
})


def stale_names(collected: Iterable[str], args: Iterable[str]) -> list[str]:
    """Names in :data:`SLOW_TESTS` whose file was collected whole but that match no test there
    (a renamed test, which would silently drop out of CI's slow run). A run given node ids
    (``file::test``) collects only part of a file, so nothing is checked then.

        >>> k = "tests/run/test_sigkill.py::test_sigkill_then_rerun_does_every_cell_exactly_once"
        >>> stale_names([k + "[local]"], []), stale_names([k + "[renamed]"], [])
        ([], ['tests/run/test_sigkill.py::test_sigkill_then_rerun_does_every_cell_exactly_once[local]'])
        >>> stale_names([k + "[renamed]"], [k])     # a node id given: part of a file, no check
        []
    """
    ids = set(collected)
    if any("::" in a for a in args):
        return []
    files = {i.split("::")[0] for i in ids}
    return sorted(t for t in SLOW_TESTS if t.split("::")[0] in files and t not in ids)
