#!/usr/bin/env bash
# Issue 19's tuning campaign: one rl-zoo3 search per hyperparameter entry, over the JEPA settings only
# (SB3_JEPA_SEARCH_SPACE=jepa: the RL settings stay the entry's; jepa_spr for the image tasks not searched before
# SPR's ingredients landed: the same plus the random shift and a projection head), TPE with a median pruner, each search's Optuna
# journal kept here so that a search cut off anywhere resumes where it stopped: run the same command again
# (--max-total-trials counts the trials the journal already holds; a trial cut off mid-run stays RUNNING in the
# journal, which has no heartbeat, and counts: see docs/guide/zoo.rst for failing it by hand).
#
#   docs/results/tuning/campaign.sh                         # every entry, in the issue's order, one after another
#   docs/results/tuning/campaign.sh ppo_jepa:CartPole-v1    # one entry
#
# Budgets: the issue's (200k steps for MinAtar, 100k for the pixel tasks, the entry's own elsewhere); 30 trials where
# a trial takes under 3 minutes here (a MinAtar Breakout trial took about 2.3 minutes on one core), 12 where it takes
# longer. One search per core: torch on one thread unless OMP_NUM_THREADS says otherwise; run two invocations with
# different entries to use two cores. Trial logs go to logs/tuning (not kept).
set -euo pipefail
cd "$(dirname "$0")/../../.."
HERE=docs/results/tuning
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# algo:env:timesteps (0: the entry's n_timesteps):trials:search space. Breakout and SpaceInvaders started in the
# jepa space and keep it (a journal's space is not changed halfway). A Seaquest trial takes 2-12 minutes on one
# core beside another job: 12 trials, the issue's number for trials over 3 minutes. CartPole's objective saturates
# at 500 from trial 0 at the entry's 100k steps: its searches run at 30k, where the entry does not yet reach the limit.
ENTRIES=(
    ppo_jepa:MinAtar/Breakout-v1:200000:30:jepa
    ppo_jepa:MinAtar/SpaceInvaders-v1:200000:30:jepa
    ppo_jepa:MinAtar/Asterix-v1:200000:30:jepa_spr
    ppo_jepa:MinAtar/Freeway-v1:200000:30:jepa_spr
    ppo_jepa:MinAtar/Seaquest-v1:200000:12:jepa_spr
    ppo_jepa:PixelCartPole-v1:100000:12:jepa_spr
    a2c_jepa:CartPole-v1:30000:30:jepa
    ppo_jepa:CartPole-v1:30000:30:jepa
    a2c_jepa:Acrobot-v1:0:30:jepa
    ppo_jepa:Acrobot-v1:0:30:jepa
    ppo_jepa:TwoRoomsDiscrete-v0:0:12:jepa_spr
)

search() {
    local algo=$1 env=$2 timesteps=$3 trials=$4 space=$5
    local name="${algo}-${env//\//-}"
    local budget=()
    [ "$timesteps" != 0 ] && budget=(-n "$timesteps")
    echo "== $name: $trials trials $(date -u +%FT%TZ)"
    SB3_JEPA_SEARCH_SPACE=$space python -m rl_zoo3.train --algo "$algo" --env "$env" -optimize \
        --n-trials "$trials" --max-total-trials "$trials" --n-jobs 1 --sampler tpe --pruner median \
        --n-startup-trials 5 --n-evaluations 5 --eval-episodes 10 "${budget[@]}" --seed 0 --no-optim-plots \
        --storage "$HERE/$name.log" --study-name "$name-$space" -f logs/tuning --verbose 0
}

selected=("$@")
[ ${#selected[@]} -eq 0 ] && selected=("${ENTRIES[@]%:*:*:*}")
for wanted in "${selected[@]}"; do
    found=0
    for entry in "${ENTRIES[@]}"; do
        IFS=: read -r algo env timesteps trials space <<< "$entry"
        if [ "$algo:$env" = "$wanted" ]; then
            search "$algo" "$env" "$timesteps" "$trials" "$space"
            found=1
        fi
    done
    [ $found = 1 ] || { echo "unknown entry $wanted; entries: ${ENTRIES[*]%:*:*:*}" >&2; exit 2; }
done
