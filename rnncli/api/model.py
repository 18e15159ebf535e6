"""A trained model in Python: `load` a checkpoint, then generate, score and look inside, as the
`generate`, `eval` and `inspect --text` commands do (they call these)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Iterator

from rnncli.model.config import ModelConfig, SampleConfig
from rnncli.run.evaluate import Score
from rnncli.run.options import RunOptions
from rnncli.run.probe import Probe
from rnncli.run.sample import Answer


def load(
    path: str,
    device: str = "auto",
    *,
    weights: str = "f32",
    threads: int | None = None,
    tune: bool = True,
    notes: Callable[[str], None] | None = None,
) -> Model:
    """The model in the checkpoint at `path`, checked as the command line checks it (a bad file is an
    RnncliError naming what is wrong), its best weights on `device` (cpu, cuda, or auto).

    weights: the format of the large matrices, as a quantised file would hold them: f32 (as
    trained), bf16 or int8 (each row scaled); generation reads them in that format, and scoring
    sees the same rounded weights, so that its loss is the loss of the model that generates
    (docs/generate.md#narrow-weights). threads: CPU threads (None: every core); tune: products by
    this CPU's measured choice (False: fixed rules); notes: told what people should hear about the
    kernel caches."""
    return Model(path, RunOptions(device=device, threads=threads, tune=tune, notes=notes), weights)


@dataclass(frozen=True)
class Generated:
    """Text made from a prompt: `text` is the continuation alone; `stop_reason` is length, stop (a
    stop string) or time (max_time)."""

    prompt: str
    text: str
    tokens: int
    stop_reason: str

    @classmethod
    def of(cls, answer: Answer) -> Generated:
        return cls(answer.prompt, answer.text, answer.tokens, answer.stop_reason)


class Model:
    """A checkpoint's model, loaded and validated. Its kernels compile (or load from the disk cache)
    when it first runs.

    config  the architecture (cell, layers, hidden, embed, vocab_size)
    weights the format its large matrices are held in (f32, bf16, int8)
    vocab   what each token id stands for (bytes past ASCII shown as \\xNN for byte models)
    meta    the checkpoint's metadata: training settings, history, corpus fingerprint, recipe

    Methods: generate (and stream, piece by piece), score, probe."""

    def __init__(self, path: str, options: RunOptions | None = None, weights: str = "f32"):
        from rnncli.store.load import load_model

        self.path, self.options = str(path), options or RunOptions()
        with self.options.applied():
            self._loaded = load_model(self.path, self.options.device, weights)

    def __repr__(self) -> str:
        c = self.config
        narrow = f", {self.weights} weights" if self.weights != "f32" else ""
        return (
            f"<rnncli.Model {c.cell} {c.layers}x{c.hidden}, vocabulary {c.vocab_size} ({self.tokenizer})"
            f"{narrow} from {self.path}>"
        )

    @property
    def config(self) -> ModelConfig:
        return self._loaded[0].cfg

    @property
    def weights(self) -> str:
        """The format the large matrices are held in: f32, bf16 or int8 (load's `weights`)."""
        return self._loaded[0].weights

    @property
    def tokenizer(self) -> str:
        """char, byte or word."""
        return self._loaded[1].kind

    @property
    def vocab(self) -> list[str]:
        from rnncli.run.probe import vocab_texts

        return vocab_texts(self._loaded[1])

    @property
    def meta(self) -> dict:
        return self._loaded[2]

    def sample_config(self, length: int = SampleConfig.length, **sampling) -> SampleConfig:
        """The sampling settings generate's keywords name, checked: temperature, top_k, top_p,
        min_p, repeat_penalty, repeat_last_n, greedy, stop, n (samples), rng_seed, max_time; each
        left out takes SampleConfig's default."""
        given = {("num_samples" if k == "n" else k): v for k, v in sampling.items()}
        unknown = sorted(set(given) - {f.name for f in fields(SampleConfig)} - {"device", "length"})
        if unknown:
            raise TypeError(f"unknown sampling keyword(s): {', '.join(unknown)}")
        if "stop" in given:
            given["stop"] = (given["stop"],) if isinstance(given["stop"], str) else tuple(given["stop"])
        return SampleConfig(length=length, device=self.options.device, **given)

    def events(self, prompts: list[str], cfg: SampleConfig, on_warning: Callable[[str], None] | None = None):
        """The decoder's events for each prompt cfg.num_samples times, as run.sample.generate yields
        them: ("piece", index, text), ("answer", Answer), then ("stats", dict). The CLI prints these."""
        from rnncli.run.sample import generate

        with self.options.applied():
            yield from generate(self._loaded, prompts, cfg, on_warning=on_warning)

    def generate(self, seed: str = "", length: int = SampleConfig.length, **sampling) -> str | list[str]:
        """The text that continues `seed` (the continuation alone), `length` tokens long unless a stop
        string or max_time ends it first; with n > 1, a list of n samples, decoded together.
        Keywords: temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, greedy, stop, n,
        rng_seed (the same seed gives the same text), max_time.

        >>> model.generate("ROMEO:", 40, rng_seed=1) == model.generate("ROMEO:", 40, rng_seed=1)
        True
        """
        answers = self.answers([seed], length, **sampling)
        return answers[0].text if len(answers) == 1 else [a.text for a in answers]

    def answers(self, prompts: list[str], length: int = SampleConfig.length, **sampling) -> list[Generated]:
        """Each prompt continued (n times each, with n given), with how each ended."""
        cfg = self.sample_config(length, **sampling)
        return [Generated.of(e[1]) for e in self.events(list(prompts), cfg) if e[0] == "answer"]

    def stream(self, seed: str = "", length: int = SampleConfig.length, **sampling) -> Iterator[str]:
        """generate's text piece by piece, as it is made (one sample)."""
        cfg = self.sample_config(length, **dict(sampling, n=1))
        for event in self.events([seed], cfg):
            if event[0] == "piece":
                yield event[2]

    def score(self, text: str | bytes) -> Score:
        """How well the model predicts `text` (bytes for a byte model): nats per token, bits per
        character, perplexity, and the tokens and characters scored. Text the vocabulary lacks is
        left out of the score (as eval does, which warns)."""
        from rnncli.run.evaluate import score_data

        with self.options.applied():
            return score_data(text, self._loaded, self.options.threads)

    def score_files(self, paths: list[str], on_warning: Callable[[str], None] | None = None) -> list[Score]:
        """Each file (or "-", standard input) scored on its own, from a zero state."""
        from rnncli.run.evaluate import score_files

        with self.options.applied():
            return score_files(list(paths), self._loaded, self.options.threads, on_warning)

    def score_held_out(self, corpus: list[str]) -> Score:
        """The model's own validation split of its corpus (the files it was trained on), scored as
        training validated it: the checkpoint's best validation loss."""
        from rnncli.run.evaluate import score_held_out

        with self.options.applied():
            return score_held_out(list(corpus), self._loaded, self.options.threads)

    def probe(
        self,
        text: str | bytes,
        top: int = 5,
        states: list[tuple[int, str]] | tuple = (),
        on_warning: Callable[[str], None] | None = None,
    ) -> Probe:
        """What the model does reading `text`: per token, its loss (nats), the `top` likeliest next
        tokens and their probabilities, and the activations of the (layer, "h" or "c") states asked
        for, as NumPy arrays (tokens x hidden units)."""
        from rnncli.run.probe import probe_text

        for layer, state in states:
            if not (0 <= layer < self.config.layers and state in ("h", "c")) or (
                state == "c" and self.config.cell != "lstm"
            ):
                from rnncli.base.errors import RnncliError

                raise RnncliError(
                    f"states: ({layer}, {state!r}) is not a state of this {self.config.cell} "
                    f"of layers 0..{self.config.layers - 1} (h, and c for an LSTM)"
                )
        with self.options.applied():
            return probe_text(text, self._loaded, top, tuple(states), self.options.threads, on_warning)
