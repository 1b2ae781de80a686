# Source this (bash) to use the local test cluster: sets KUBECONFIG, puts the cluster's own kubectl
# first on PATH and sets KB_REGISTRY. Honours KB_CLUSTER_DIR and KB_K8S_CACHE like tests/cluster/up.
# shellcheck shell=bash
_kb_cluster_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export KB_CLUSTER_DIR=${KB_CLUSTER_DIR:-$HOME/.cache/kb/cluster}
export KUBECONFIG=$KB_CLUSTER_DIR/admin.kubeconfig
export KB_REGISTRY=127.0.0.1:5000
# shellcheck disable=SC1091 # lib.sh sits beside this file
PATH=$(source "$_kb_cluster_here/lib.sh" && k8s_bin_dir):$PATH
export PATH
unset _kb_cluster_here
