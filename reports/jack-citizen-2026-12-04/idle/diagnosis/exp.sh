#!/bin/bash
# usage: exp.sh NAME RUNS [env...]
name=$1; runs=$2; shift 2
cd /work/main && . .venv/bin/activate
for i in $(seq $runs); do
  : > /tmp/jackdv.log
  env "$@" timeout 300 live-synth bench latency --runs 1 --notes 40 --no-fluidsynth $EXTRA --out /tmp/exp-$name.jsonl > /tmp/exp-$name-$i.log 2>&1
  x=$(grep -a "^| live-synth |" /tmp/exp-$name-$i.log | tail -1)
  who=$(grep -a "XRun: client = " /tmp/jackdv.log | sed 's/.*client = \([^ ]*\).*state = \(.*\)/\1:\2/' | sort | uniq -c | tr '\n' ' ')
  echo "$name $i $x || $who"
done
