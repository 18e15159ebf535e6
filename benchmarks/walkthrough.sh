#!/usr/bin/env bash
# A newcomer's first hour, as the README tells it: its commands in order, on a bundled corpus, in a
# fresh folder, each output checked. `bash benchmarks/walkthrough.sh [SECONDS]` (the README's 60 by
# default; tests/test_walkthrough.py runs it with 2). Ends with "walkthrough: N passed, 0 failed".
set -u
T=${1:-60}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK" || exit 1
cp "$ROOT"/sample_corpora/dialogues.txt "$ROOT"/sample_corpora/recipes.txt .
passed=0 failed=0
check() {  # check NAME CONDITION-COMMAND...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); else
    failed=$((failed + 1)); echo "walkthrough: FAILED: $name" >&2; tail -n 3 err | sed 's/^/    /' >&2
  fi
}
has() { grep -qF -- "$2" "$1"; }

rnncli --version >out 2>err
check "--version" has out "rnncli "
rnncli generate >out 2>err; code=$?
check "no model yet: says how to make one" test $code = 1
check "  ... naming train" has err "train one with"

rnncli train dialogues.txt --time "$T" >out 2>err; code=$?
check "train --time" test $code = 0
check "  ... saved" has err "saved rnncli.safetensors after"
check "  ... stdout is data only" test ! -s out
rnncli generate --seed "MARGARET:" -n 200 --rng-seed 1 >out 2>err
check "generate streams the seed and 200 characters" test "$(head -c 9 out)" = "MARGARET:"
check "  ... and nothing on stderr" test ! -s err
rnncli generate -p "MARGARET:" -n 200 --rng-seed 1 >out2 2>err
check "-p is --seed" cmp -s out out2

before=$(sha256sum rnncli.safetensors)
rnncli train recipes.txt --time 1 >out 2>err; code=$?
check "a second train refuses to overwrite" test $code = 1
check "  ... the model is untouched" test "$before" = "$(sha256sum rnncli.safetensors)"
check "  ... and says how to continue or replace it" has err "--resume rnncli.safetensors"
rnncli train dialogues.txt --resume rnncli.safetensors >out 2>err; code=$?
check "a finished run says nothing is left" has err "nothing left to do"
rnncli train dialogues.txt --resume rnncli.safetensors --more 2s >out 2>err; code=$?
check "--more trains more" test $code = 0
check "  ... counting the session" has err "this session)"

rnncli eval rnncli.safetensors dialogues.txt recipes.txt >out 2>err
check "eval: a line per file and a total" test "$(wc -l <out)" = 3
check "  ... the total last" test "$(tail -n 1 out | cut -d' ' -f1)" = total
rnncli eval --held-out dialogues.txt >out 2>err
check "eval --held-out" has out "(held-out split)"
rnncli eval recipes.txt rnncli.safetensors >out 2>err; code=$?
check "a model where text goes is named" has err "is an rnncli checkpoint, not text to score"
rnncli inspect >out 2>err
check "inspect" has out "rnncli.safetensors  (rnncli checkpoint"
rnncli inspect -m rnncli.safetensors >out2 2>err
check "inspect -m" cmp -s out out2
rnncli generate -n 100000 2>err | head -c 10 >out; code=${PIPESTATUS[0]}
check "| head ends quietly" test "$code" = 141 -a ! -s err

rnncli train recipes.txt --tokenizer word --time "$T" --out words.safetensors >out 2>err; code=$?
check "train --tokenizer word" test $code = 0
rnncli generate words.safetensors -n 200 --rng-seed 2 >out 2>err
check "word generation keeps the spaces between words" test "$(tr -cd ' ' <out | wc -c)" -ge 10
echo "the zyzzyva quokka" | rnncli eval words.safetensors - >out 2>err
check "unknown words are listed apart" has err "'quokka', 'zyzzyva'"

echo "walkthrough: $passed passed, $failed failed"
test "$failed" = 0
