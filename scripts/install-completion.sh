#!/usr/bin/env bash
# Installs kvctl's shell completion, which swift-argument-parser generates
# (`kvctl --generate-completion-script SHELL`), for bash, zsh or fish.
#
#   scripts/install-completion.sh [--shell bash|zsh|fish] [--system] [--kvctl PATH]
#
# By default for the current user, under $HOME (XDG folders), for the shell in $SHELL; --system
# installs it for every user in the system's completion folder (needs root). kvctl is the one on
# PATH, or --kvctl PATH, or this package's debug build (built when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: scripts/install-completion.sh [--shell bash|zsh|fish] [--system] [--kvctl PATH]" >&2
    exit 64
}

shell=$(basename "${SHELL:-bash}")
system=false
kvctl=
while (($# > 0)); do
    case $1 in
    --shell)
        (($# >= 2)) || usage
        shell=$2
        shift 2
        ;;
    --system)
        system=true
        shift
        ;;
    --kvctl)
        (($# >= 2)) || usage
        kvctl=$2
        shift 2
        ;;
    -h | --help) usage ;;
    *)
        echo "install-completion: unknown argument '$1'" >&2
        usage
        ;;
    esac
done

if [[ -z "$kvctl" ]]; then
    if command -v kvctl >/dev/null 2>&1; then
        kvctl=$(command -v kvctl)
    else
        swift build --product kvctl >&2
        kvctl="$(swift build --show-bin-path)/kvctl"
    fi
fi

data_home=${XDG_DATA_HOME:-$HOME/.local/share}
config_home=${XDG_CONFIG_HOME:-$HOME/.config}
note=
case $shell in
bash)
    if $system; then target=/usr/share/bash-completion/completions/kvctl; else
        target=$data_home/bash-completion/completions/kvctl
        note="bash-completion loads it from there in new shells (package bash-completion)"
    fi
    ;;
zsh)
    if $system; then target=/usr/local/share/zsh/site-functions/_kvctl; else
        target=$data_home/zsh/site-functions/_kvctl
        note="add to ~/.zshrc, before compinit: fpath=($data_home/zsh/site-functions \$fpath)"
    fi
    ;;
fish)
    if $system; then target=/usr/share/fish/vendor_completions.d/kvctl.fish; else
        target=$config_home/fish/completions/kvctl.fish
        note="fish loads it from there in new shells"
    fi
    ;;
*)
    echo "install-completion: no completion for shell '$shell' (bash, zsh or fish; pass --shell)" >&2
    exit 64
    ;;
esac

script=$("$kvctl" --generate-completion-script "$shell")
if [[ -z "$script" ]]; then
    echo "install-completion: $kvctl generated an empty $shell completion script" >&2
    exit 1
fi
mkdir -p "$(dirname "$target")"
printf '%s\n' "$script" >"$target"
echo "install-completion: installed kvctl's $shell completion at $target"
if [[ -n "$note" ]]; then echo "install-completion: $note"; fi
