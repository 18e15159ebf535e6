"""The golden test's cases (tests/test_golden.py runs them): every command line whose stdout is
recorded, the training runs whose weights are, the error cases of README's "When things go wrong",
and what of their output is the clock's or the machine's rather than rnncli's (normalised)."""

from __future__ import annotations

import re

CHAR, WORD, BYTE = "char_gru.safetensors", "word_lstm.safetensors", "byte_rnn.safetensors"
FIXED = "--threads 2 --device cpu"  # (eval and train also take --no-tune; inspect does not)
UNTUNED = f"{FIXED} --no-tune"
TINY = f"--recipe plain --cell lstm --layers 2 --hidden 8 --embed 8 --batch 4 --seq 16 --rng-seed 5 {UNTUNED}"
FULL_DISK = "> /dev/full"  # (in the place of a stdin file: stdout is /dev/full)


def cli(*parts) -> list:
    """argv from command-line strings, split at spaces, and lists, taken as they are (for an
    argument holding a space or bytes that are not UTF-8)."""
    return [a for part in parts for a in (part if isinstance(part, list) else part.split())]


# --- what is normalised --------------------------------------------------------------------------


def _timings(text: str, keys: tuple[str, ...]) -> str:
    """Replace the JSON values of `keys` (numbers or null) by "<clock>"."""
    names = "|".join(keys)
    return re.sub(rf'"({names})": [^,}}\]]+', r'"\1": "<clock>"', text)


def clock_fields_of_generation(text: str) -> str:
    """generate --json: a sample's `stats` are timings of its batch; the counts stay."""
    keys = ("prompt_s", "first_token_s", "decode_s", "prompt_tokens_per_s", "tokens_per_s", "chars_per_s")
    return _timings(text, keys)


def clock_fields_of_training(text: str) -> str:
    """train --json: speeds and durations (the losses, steps and rates are compared as printed: with
    the seed and the threads fixed they are the same bits on every run)."""
    return _timings(text, ("tokens_per_s", "elapsed_s", "train_s", "compile_s", "run_elapsed_s"))


def measured_speed(text: str) -> str:
    """train --plan with --steps: the recipe's choice does not depend on the speed when the stop is a
    step count, but the tokens/s it measured and the seconds it predicts from them do."""
    text = re.sub(r"at [0-9.]+k tokens/s", "at <measured>k tokens/s", text)
    text = re.sub(r"about [0-9,.]+ s of training", "about <predicted> s of training", text)
    return _timings(text, ("seconds", "tokens_per_s", "compile_s"))


def age_and_memory(text: str) -> str:
    """Error lines: a checkpoint's age ('saved 3 minutes ago') is the clock's, and the memory
    available is the machine's."""
    text = re.sub(r"saved [^)]* ago", "saved <age> ago", text)
    return re.sub(r"more than the [0-9.]+ [KMGT]iB available", "more than the <free> available", text)


# --- the cases ---------------------------------------------------------------------------------------

# name: (argv, stdin file or None, normaliser or None). Each prints data on stdout and exits 0.
OUTPUTS = {
    "version": (cli("--version"), None, None),
    "generate_char": (cli(f"generate {CHAR} --seed CECILY: -n 120 --rng-seed 7 --device cpu"), None, None),
    "generate_char_temperature_top_k": (
        cli(f"generate {CHAR} --seed CECILY: -n 120 --rng-seed 7 -t 0.7 --top-k 5 --device cpu"),
        None,
        None,
    ),
    "generate_char_top_p_min_p_penalty": (
        cli(
            f"generate {CHAR} -s Good -n 80 --rng-seed 1 --top-p 0.9 --min-p 0.05 --repeat-penalty 1.3",
            "--repeat-last-n 16 --device cpu",
        ),
        None,
        None,
    ),
    "generate_char_greedy_no_echo": (
        cli(f"generate -m {CHAR} -n 60 --greedy --no-echo --device cpu"),
        None,
        None,
    ),
    "generate_char_samples": (cli(f"generate {CHAR} -s A -N 3 -n 40 --rng-seed 2 --device cpu"), None, None),
    "generate_char_stop_json": (
        cli(f"generate {CHAR} -s A -N 2 -n 200 --rng-seed 2", ["--stop", "\n\n"], "--json --device cpu"),
        None,
        clock_fields_of_generation,
    ),
    "generate_char_prompts_stdin": (
        cli(f"generate {CHAR} --prompts - -n 30 --rng-seed 4 --device cpu"),
        "prompts.txt",
        None,
    ),
    "generate_word": (
        cli(f"generate {WORD}", ["-s", "the tide"], "-n 30 --rng-seed 5 --device cpu"),
        None,
        None,
    ),
    "generate_byte": (cli(f"generate {BYTE} -s Good -n 60 --rng-seed 5 --device cpu"), None, None),
    "eval_char_files": (cli(f"eval {CHAR} notes.txt head.txt {UNTUNED}"), None, None),
    "eval_char_file_and_stdin_json": (cli(f"eval -m {CHAR} head.txt - --json {UNTUNED}"), "notes.txt", None),
    "eval_char_held_out_json": (cli(f"eval {CHAR} --held-out corpus.txt --json {UNTUNED}"), None, None),
    "eval_word": (cli(f"eval {WORD} notes.txt {UNTUNED}"), None, None),
    "eval_byte_stdin_json": (cli(f"eval {BYTE} --json {UNTUNED}"), "notes.txt", None),
    "inspect_char": (cli(f"inspect {CHAR}"), None, None),
    "inspect_char_json": (cli(f"inspect {CHAR} --json"), None, None),
    "inspect_word": (cli(f"inspect {WORD}"), None, None),
    "inspect_byte_json": (cli(f"inspect -m {BYTE} --json"), None, None),
    "inspect_char_text_top_find_neurons_match_html": (
        cli(f"inspect {CHAR} --text head.txt --top 3 --find-neurons --match 10:16 --html page.html {FIXED}"),
        None,
        None,
    ),
    "inspect_char_text_json": (
        cli(
            f"inspect {CHAR} --text head.txt --json --top 2 --neuron 1:3",
            f"--find-neurons --match 10:16 {FIXED}",
        ),
        None,
        None,
    ),
    "inspect_word_text_stdin_json": (
        cli(f"inspect {WORD} --text - --json --top 2 --neuron 0:3 --state c {FIXED}"),
        "head.txt",
        None,
    ),
    "train_plan_auto_steps": (cli(f"train corpus.txt --steps 50 --plan {UNTUNED}"), None, measured_speed),
    "train_plan_auto_steps_json": (
        cli(f"train corpus.txt --steps 50 --plan --json {UNTUNED}"),
        None,
        measured_speed,
    ),
}
# Run one after the other, in this order (the second goes on with what the first wrote).
TRAINING = {
    "train_json": (
        cli(f"train corpus.txt {TINY} --steps 6 --eval-every 3 --out run.safetensors --json"),
        None,
        clock_fields_of_training,
    ),
    "train_resume_json": (
        cli(f"train corpus.txt --resume run.safetensors --more 3steps {UNTUNED} --json"),
        None,
        clock_fields_of_training,
    ),
}
OUTPUTS.update(TRAINING)

# name: (argv, stdin file or None). Each ends with one line on stderr and a non-zero exit; the
# README's table row it stands for is in the comment.
PLAIN = f"--recipe plain {FIXED}"
ERROR_CASES = {
    # checkpoint not in safetensors form, cut short, padded
    "not_safetensors": (cli("inspect junk.safetensors"), None),
    "header_cut_short": (cli("inspect head_only.safetensors"), None),
    "data_cut_short": (cli("inspect short.safetensors"), None),
    # a flipped bit in a tensor a command reads, or in the header
    "flipped_bit_eval": (cli(f"eval flipped.safetensors notes.txt {FIXED}"), None),
    "flipped_bit_header": (cli("inspect flipped_header.safetensors"), None),
    # settings out of range, unknown cell; vocabulary against the embedding; NaN weights
    "unknown_cell": (cli("inspect bad_cell.safetensors"), None),
    "vocabulary_short": (cli("inspect short_vocab.safetensors"), None),
    "nan_weight": (cli(f"eval nan.safetensors notes.txt {FIXED}"), None),
    # a checkpoint from a newer rnncli
    "newer_format": (cli("inspect newer.safetensors"), None),
    # stdout on a full disk
    "stdout_full": (cli(f"inspect {CHAR}"), FULL_DISK),
    # a numeric option out of range (1 from rnncli, 2 where the parser refuses it)
    "generate_negative_length": (cli(f"generate {CHAR} -n -1 --device cpu"), None),
    "generate_negative_seed": (cli(f"generate {CHAR} --rng-seed -1 --device cpu"), None),
    "generate_top_p": (cli(f"generate {CHAR} --top-p 2 --device cpu"), None),
    "generate_temperature": (cli(f"generate {CHAR} -t -1 --device cpu"), None),
    "train_nan_lr": (cli(f"train corpus.txt --lr nan --out x.safetensors {PLAIN}"), None),
    "train_zero_batch": (cli(f"train corpus.txt --batch 0 --out x.safetensors {PLAIN}"), None),
    "train_zero_threads": (cli("train corpus.txt --threads 0"), None),
    "train_more_unit": (cli(f"train corpus.txt --resume {CHAR} --more 10q"), None),
    # a model too large for memory
    "train_too_wide": (cli(f"train corpus.txt --hidden 200000 --plan {PLAIN}"), None),
    # the corpus empty (or whitespace), too short, not UTF-8
    "corpus_empty": (cli(f"train empty.txt --out x.safetensors {PLAIN}"), None),
    "corpus_too_short": (cli(f"train one.txt --out x.safetensors {PLAIN}"), None),
    "corpus_not_utf8": (cli(f"train binary.txt --out x.safetensors {PLAIN}"), None),
    # a missing file (or a directory)
    "eval_missing_file": (cli(f"eval {CHAR} missing.txt {FIXED}"), None),
    # train onto another run's checkpoint; --resume with nothing left; --resume on other text
    "train_onto_another_run": (cli(f"train corpus.txt --out {CHAR} {PLAIN}"), None),
    "resume_nothing_left": (cli(f"train corpus.txt --resume {CHAR} {FIXED}"), None),
    "resume_other_text": (cli(f"train notes.txt --resume {CHAR} --more 2steps {FIXED}"), None),
    # a checkpoint where text is expected, two models named, no model at all
    "eval_checkpoint_as_text": (cli(f"eval notes.txt {CHAR} {FIXED}"), None),
    "train_checkpoint_as_text": (cli(f"train {CHAR} {PLAIN}"), None),
    "eval_two_models": (cli(f"eval {CHAR} {WORD} notes.txt {FIXED}"), None),
    "eval_no_model": (cli(f"eval notes.txt {FIXED}"), None),
    # a path option that cannot work
    "train_out_folder": (cli(f"train corpus.txt --out . {PLAIN}"), None),
    # --seed or --stop not UTF-8
    "seed_not_utf8": (cli(f"generate {CHAR} -n 3 --seed", [b"\xff\xfe"], "--device cpu"), None),
    "stop_not_utf8": (cli(f"generate {CHAR} -n 3 --stop", [b"\xff"], "--device cpu"), None),
    # inspect --text with a unit the model lacks; an option that needs --text without it
    "inspect_neuron_past_layers": (cli(f"inspect {CHAR} --text notes.txt --neuron 5:0 {FIXED}"), None),
    "inspect_neuron_without_text": (cli(f"inspect {CHAR} --neuron 1:3"), None),
}


# --- making the scratch folder ------------------------------------------------------------------
