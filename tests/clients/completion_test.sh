#!/usr/bin/env bash
# The bash completions of rot13d, rot13 and rot13-bench (packaging/bash-completion):
# they parse, they offer every long option their tool's --help lists and no other,
# they complete what each option takes, and bash-completion's own loader (when it
# is installed) finds each one under its command's name.
#
#   completion_test.sh COMPLETIONS_DIR ROT13D ROT13 ROT13_BENCH
set -uo pipefail

dir=$1
declare -A binary=([rot13d]=$2 [rot13]=$3 [rot13-bench]=$4)
declare -A function=([rot13d]=_rot13d [rot13]=_rot13 [rot13-bench]=_rot13_bench)
failures=0
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  failures=$((failures + 1))
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/etc"
touch "$tmp/etc/rot13d.toml" "$tmp/etc/other.toml" "$tmp/rot13d.sock"

# Completes LINE (the cursor at its end) for COMMAND in a bash that has only
# the completion file loaded, as bash would call it; prints the candidates
# sorted, one a line.
complete_line() {
  local command=$1 line=$2
  bash --norc --noprofile -c '
    source "$1" || exit 1
    COMP_LINE=$3
    COMP_POINT=${#COMP_LINE}
    # COMP_WORDS as bash splits them (COMP_WORDBREAKS: blanks, = and :).
    mapfile -t COMP_WORDS < <(grep -oE "[^[:blank:]=:]+|[=:]+" <<<"$COMP_LINE")
    [[ $COMP_LINE == *[[:blank:]] ]] && COMP_WORDS+=("")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    "$2" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
    printf "%s\n" "${COMPREPLY[@]}"
  ' completion "$dir/$command" "${function[$command]}" "$line" | sort
}

# expect_candidates COMMAND LINE WORD... : exactly these candidates.
expect_candidates() {
  local command=$1 line=$2
  shift 2
  local got want
  got=$(complete_line "$command" "$line")
  want=$(printf '%s\n' "$@" | sort)
  [[ $got == "$want" ]] || fail "$line: got [${got//$'\n'/ }], want [${want//$'\n'/ }]"
}

# expect_some COMMAND LINE WORD... : at least these candidates.
expect_some() {
  local command=$1 line=$2 word
  shift 2
  local got
  got=$(complete_line "$command" "$line")
  for word; do
    grep -qxF -- "$word" <<<"$got" || fail "$line: no [$word] in [${got//$'\n'/ }]"
  done
}

# expect_none COMMAND LINE WORD... : none of these candidates.
expect_none() {
  local command=$1 line=$2 word
  shift 2
  local got
  got=$(complete_line "$command" "$line")
  for word; do
    grep -qxF -- "$word" <<<"$got" && fail "$line: [$word] offered, but it does not apply"
  done
}

for command in rot13d rot13 rot13-bench; do
  bash -n "$dir/$command" || fail "$command: does not parse"
  if command -v shellcheck >/dev/null; then
    shellcheck -s bash "$dir/$command" || fail "$command: shellcheck"
  fi
  # Every long option of the usage text, and no other.
  mapfile -t options < <("${binary[$command]}" --help | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u)
  [[ ${#options[@]} -gt 3 ]] || fail "$command --help lists no options"
  expect_candidates "$command" "$command --" "${options[@]}"
done

# rot13d: file names for --config, in both spellings; nothing for --listen.
expect_candidates rot13d "rot13d -c $tmp/etc/r" "$tmp/etc/rot13d.toml"
expect_candidates rot13d "rot13d --config $tmp/etc/" "$tmp/etc/rot13d.toml" "$tmp/etc/other.toml"
expect_candidates rot13d "rot13d --config=$tmp/etc/o" "$tmp/etc/other.toml"
expect_candidates rot13d "rot13d -l "
expect_some rot13d "rot13d -t -" -q --quiet

# rot13: socket paths after unix:, host names, the default port after a host.
expect_candidates rot13 "rot13 unix:$tmp/rot" "$tmp/rot13d.sock"
expect_some rot13 "rot13 " unix: localhost
expect_candidates rot13 "rot13 -w 5s localhost " 1067
expect_candidates rot13 "rot13 --timeout "
expect_candidates rot13 "rot13 127.0.0.1:1067 "

# rot13-bench: the modes first, each mode's options, --expect's values.
expect_some rot13-bench "rot13-bench " rr connect stream unix: localhost
expect_candidates rot13-bench "rot13-bench c" connect
expect_candidates rot13-bench "rot13-bench rr --expect " rot13 echo
expect_candidates rot13-bench "rot13-bench --expect=e" echo
expect_some rot13-bench "rot13-bench stream --" --bytes --duration
expect_none rot13-bench "rot13-bench stream --" --size --requests --latency
expect_some rot13-bench "rot13-bench connect -c 4 --" --size --latency
expect_none rot13-bench "rot13-bench connect -c 4 --" --bytes
expect_none rot13-bench "rot13-bench rr localhost " rr connect stream
expect_candidates rot13-bench "rot13-bench -d 10s localhost " 1067
expect_candidates rot13-bench "rot13-bench connect --source "
expect_candidates rot13-bench "rot13-bench --source 127.0.0.2 localhost " 1067
expect_candidates rot13-bench "rot13-bench unix:$tmp/rot" "$tmp/rot13d.sock"

# bash-completion's loader, which finds a completion by its command's name.
loader=/usr/share/bash-completion/bash_completion
if [[ -r $loader ]]; then
  mkdir -p "$tmp/user/completions"
  cp "$dir/rot13d" "$dir/rot13" "$dir/rot13-bench" "$tmp/user/completions/"
  for command in rot13d rot13 rot13-bench; do
    got=$(BASH_COMPLETION_USER_DIR=$tmp/user bash --norc --noprofile -c '
      source "$1" >/dev/null 2>&1
      __load_completion "$2" && complete -p "$2"' loader "$loader" "$command" 2>&1)
    [[ $got == *"-F ${function[$command]} $command" ]] || fail "bash-completion does not load $command: $got"
  done
else
  echo "bash-completion is not installed: its loader is not tried"
fi

if ((failures > 0)); then
  echo "$failures failures"
  exit 1
fi
echo "all completions behave"
