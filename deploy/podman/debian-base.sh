#!/usr/bin/env bash
# Makes a root filesystem equivalent to Docker Hub's debian:bookworm-slim with debootstrap,
# for machines that cannot pull public images (scripts/podman-setup.sh imports the result as
# docker.io/library/debian:bookworm-slim). Run as root:
#
#   deploy/podman/debian-base.sh OUT.tar [MIRROR]
#
# scripts/podman-setup.sh caches OUT.tar under a hash of this file, the suite and the mirror:
# edit this file and the next setup makes a new base image.
#
# What "slim" means here, after the official image (debuerreotype): minbase, no
# documentation, man pages or translations (dpkg path-exclude, so packages installed later
# leave them out too), apt deletes downloaded .debs and skips translations, no package
# lists in the image, services are not started on install (policy-rc.d).

set -euo pipefail

OUT="${1:?usage: debian-base.sh OUT.tar [MIRROR]}"
MIRROR="${2:-http://deb.debian.org/debian}"
SUITE=bookworm
SECURITY_MIRROR="${MIRROR%/debian}/debian-security"

[[ "$(id -u)" -eq 0 ]] || { echo "debian-base.sh: run as root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "debian-base.sh: debootstrap missing" >&2; exit 1; }

ROOTFS="$(mktemp -d -t herald-debian-base.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT

debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || {
    tail -n 30 "$ROOTFS.log" >&2
    rm -f "$ROOTFS.log"
    echo "debian-base.sh: debootstrap failed" >&2
    exit 1
}
rm -f "$ROOTFS.log"

# Sources as the official image has them (deb822), with updates and security.
rm -f "$ROOTFS/etc/apt/sources.list"
cat >"$ROOTFS/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: ${MIRROR}
Suites: ${SUITE} ${SUITE}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${SECURITY_MIRROR}
Suites: ${SUITE}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF
cat >"$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
cat >"$ROOTFS/etc/apt/apt.conf.d/docker-no-languages" <<'EOF'
Acquire::Languages "none";
EOF
cat >"$ROOTFS/etc/apt/apt.conf.d/docker-gzip-indexes" <<'EOF'
Acquire::GzipIndexes "true";
EOF
cat >"$ROOTFS/usr/sbin/policy-rc.d" <<'EOF'
#!/bin/sh
# Containers: never start services from package scripts.
exit 101
EOF
chmod 0755 "$ROOTFS/usr/sbin/policy-rc.d"

# Drop what the path-excludes would have kept out, caches, lists and logs.
find "$ROOTFS/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete
find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
rm -rf "$ROOTFS"/usr/share/{groff,info,linda,lintian/overrides,man}/*
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/apt/*.bin \
    "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/ldconfig/aux-cache
find "$ROOTFS/var/log" -type f -exec truncate -s 0 {} +
: >"$ROOTFS/etc/machine-id"
rm -f "$ROOTFS/etc/hostname" "$ROOTFS/etc/resolv.conf"

tar --numeric-owner --xattrs -C "$ROOTFS" -cf "$OUT.partial" .
mv "$OUT.partial" "$OUT"
