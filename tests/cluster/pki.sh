# Certificates and kubeconfigs of the local test cluster, made with openssl. Sourced by `up`.
# shellcheck shell=bash

# new_key FILE: an ECDSA P-256 private key (fast to make, accepted by every component).
new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# issue_cert NAME SUBJECT USAGE [SAN]: $PKI/NAME.{key,crt} signed by the cluster CA.
# USAGE is serverAuth, clientAuth or both ("serverAuth,clientAuth").
issue_cert() {
  local name=$1 subject=$2 usage=$3 san=${4:-}
  [[ -s $PKI/$name.crt ]] && return 0
  new_key "$PKI/$name.key"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [[ -n $san ]] && echo "subjectAltName=$san"
  } >"$PKI/$name.ext"
  openssl req -new -key "$PKI/$name.key" -subj "$subject" -out "$PKI/$name.csr"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt.tmp" 2>/dev/null
  mv "$PKI/$name.crt.tmp" "$PKI/$name.crt"
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

# write_kubeconfig FILE USER CERT_NAME: a kubeconfig for USER with the client cert CERT_NAME,
# talking to the apiserver on loopback (its serving cert names 127.0.0.1).
write_kubeconfig() {
  local file=$1 user=$2 cert=$3
  [[ -s $file ]] && return 0
  cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kb-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$cert.crt")
    client-key-data: $(base64 -w0 <"$PKI/$cert.key")
contexts:
- name: kb-local
  context:
    cluster: kb-local
    user: $user
current-context: kb-local
EOF
  chmod 600 "$file.tmp"
  mv "$file.tmp" "$file"
}

step_pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  if [[ ! -s $PKI/ca.crt ]]; then
    new_key "$PKI/ca.key"
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=kb-local-ca" -days 3650 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$PKI/ca.crt.tmp"
    mv "$PKI/ca.crt.tmp" "$PKI/ca.crt"
  fi
  # The service-account signing key pair.
  if [[ ! -s $PKI/sa.pub ]]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
    openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
  fi
  issue_cert apiserver "/CN=kube-apiserver" serverAuth \
    "IP:$NODE_IP,IP:127.0.0.1,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  issue_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  issue_cert kubelet-serving "/CN=$NODE_NAME" serverAuth "IP:$NODE_IP,DNS:$NODE_NAME"
  issue_cert admin "/O=system:masters/CN=kb-admin" clientAuth
  issue_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
  issue_cert controller-manager "/CN=system:kube-controller-manager" clientAuth
  issue_cert scheduler "/CN=system:kube-scheduler" clientAuth
  issue_cert kube-proxy "/CN=system:kube-proxy" clientAuth
  write_kubeconfig "$STATE/admin.kubeconfig" kb-admin admin
  write_kubeconfig "$PKI/kubelet.kubeconfig" "system:node:$NODE_NAME" kubelet
  write_kubeconfig "$PKI/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
  write_kubeconfig "$PKI/scheduler.kubeconfig" system:kube-scheduler scheduler
  write_kubeconfig "$PKI/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
  say "certificates: CA, serving and client certs, kubeconfigs in $PKI; admin: $STATE/admin.kubeconfig"
}
