#!/usr/bin/env bash
# Builds what a fleet installs, into dist/ (or --out DIR):
#   starling-VERSION-linux-ARCH   one binary that needs only the C library: Swift's runtime and
#                                 Foundation linked in (--static-swift-stdlib), libcrypto and
#                                 zlib linked from the system's .a files (libssl-dev, zlib1g-dev);
#                                 dist/starling links to it (the Ansible role's default)
#   starling_VERSION-1_ARCH.deb   dpkg-deb; lintian-clean (errors fail the script)
#   starling-VERSION-1.ARCH.rpm   rpmbuild (from the `rpm` package on Debian)
# and SHA256SUMS. Options: --binary-only (no packages), --out DIR.
# The version is BuildStamp.release (Sources/StarlingNode/Engine/BuildStamp.swift) or
# $STARLING_VERSION; `starling --version` also names the commit (with -dirty when the tree has
# uncommitted changes). The release build lives in .build-pkg/ (another scratch path than
# `swift build`'s, so the two never rebuild each other); a rerun with nothing changed takes
# seconds. Needs: dpkg-dev, rpm, lintian, help2man, binutils (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

out=dist
binary_only=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --binary-only) binary_only=1; shift ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "package.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)

version=${STARLING_VERSION:-$(sed -n 's/.*static let release = "\(.*\)".*/\1/p' Sources/StarlingNode/Engine/BuildStamp.swift)}
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+([.~+][0-9A-Za-z.~+]*)?$ ]] || { echo "package.sh: bad version '$version'" >&2; exit 1; }
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    commit="$commit-dirty"
fi
arch=$(uname -m)                                  # x86_64, aarch64
debarch=$(dpkg --print-architecture 2>/dev/null || echo amd64)

# 1. The stamp: a generated file that only -DSTARLING_STAMPED compiles, removed afterwards, so
#    a plain `swift build` keeps BuildStamp's "-dev" defaults and no tracked file changes.
stamp=Sources/StarlingNode/Engine/BuildStamp.generated.swift
trap 'rm -f "$root/$stamp"' EXIT
cat > "$stamp" <<EOF
// Written by scripts/package.sh for one build, then removed; never commit it.
#if STARLING_STAMPED
extension BuildStamp {
    public static let version = "$version"
    public static let commit = "$commit"
}
#endif
EOF

# 2. libcrypto, zlib and the C++ runtime statically: a folder holding only their archives
#    comes first on the linker's search path, so `link "crypto"` / `link "z"` of the module
#    maps and the Swift runtime's -lstdc++ find the .a there before the system's .so (no
#    change to Package.swift; the debug build stays dynamic). -static-libgcc replaces
#    libgcc_s.so with libgcc_eh.a for the unwinder.
staticlibs=$root/.build-pkg/static-libs
mkdir -p "$staticlibs"
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo "$arch-linux-gnu")
for lib in libcrypto.a libz.a libstdc++.a; do
    found=""
    for dir in "/usr/lib/$multiarch" /usr/lib64 /usr/lib; do
        if [ -f "$dir/$lib" ]; then found=$dir/$lib; break; fi
    done
    if [ -z "$found" ]; then
        found=$(clang -print-file-name="$lib" 2>/dev/null || true)
        [ -f "$found" ] || found=""
    fi
    [ -n "$found" ] || { echo "package.sh: $lib not found: install libssl-dev, zlib1g-dev and libstdc++-12-dev" >&2; exit 1; }
    ln -sf "$found" "$staticlibs/$lib"
done

# 3. On x86_64, the four symbols newer than glibc 2.34 go through wrappers that older glibc
#    can serve (scripts/package/glibc-compat.c says which and why): the binary then runs on
#    EL 9 and Ubuntu 22.04 too. STARLING_GLIBC_COMPAT=0 builds without them.
compat=()
if [ "$arch" = x86_64 ] && [ "${STARLING_GLIBC_COMPAT:-1}" = 1 ]; then
    clang -O2 -fPIC -c scripts/package/glibc-compat.c -o .build-pkg/glibc-compat.o
    compat=(-Xlinker "$root/.build-pkg/glibc-compat.o")
    for sym in hypot hypotf arc4random _dl_find_object; do compat+=(-Xlinker "--wrap=$sym"); done
fi

echo "building starling $version (commit $commit), release, static"
# Always relinked: the build system does not track the linker's own inputs above.
rm -f .build-pkg/release/starling
swift build -c release --product starling --scratch-path .build-pkg --static-swift-stdlib \
    -Xswiftc -DSTARLING_STAMPED -Xlinker -L"$staticlibs" -Xswiftc -Xclang-linker -Xswiftc -static-libgcc "${compat[@]}"
built=$root/.build-pkg/release/starling

# 4. Stripped copy; check that only the C library is needed and which glibc.
bin=$out/starling-$version-linux-$arch
strip --strip-unneeded -o "$bin.tmp" "$built"
chmod 0755 "$bin.tmp"
mv "$bin.tmp" "$bin"
ldd_out=$(ldd "$bin")
libc_only='^[[:space:]]*(linux-vdso\.so\.1|linux-gate\.so\.1|lib(c|m|pthread|dl|rt|util|resolv)\.so\.[0-9]+|/lib[^ ]*/ld-linux[^ ]*\.so\.[0-9]+)[[:space:]]'
if grep -Evq "$libc_only" <<<"$ldd_out"; then
    echo "package.sh: the binary needs libraries outside the C library:" >&2
    grep -Ev "$libc_only" <<<"$ldd_out" >&2
    exit 1
fi
glibc=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
[ "$("$bin" --version)" = "$version (commit $commit)" ] || { echo "package.sh: --version says '$("$bin" --version)'" >&2; exit 1; }
# dist/starling: the latest build under a name that does not change (the Ansible role's default).
ln -sfn "$(basename "$bin")" "$out/starling"
echo "$bin: $(du -h "$bin" | cut -f1), needs $glibc or later; ldd:"
sed 's/^/    /' <<<"$ldd_out"

if [ "$binary_only" = 1 ]; then
    (cd "$out" && sha256sum "$(basename "$bin")" > SHA256SUMS)
    exit 0
fi

# 5. The file tree both packages install.
work=$root/.build-pkg/package
rm -rf "$work"
tree=$work/tree
install -d "$tree/usr/bin" "$tree/usr/lib/systemd/system" "$tree/usr/lib/sysusers.d" "$tree/etc/starling" \
    "$tree/usr/share/man/man1" "$tree/usr/share/bash-completion/completions" \
    "$tree/usr/share/zsh/vendor-completions" "$tree/usr/share/fish/vendor_completions.d" \
    "$tree/usr/share/doc/starling"
install -m 0755 "$bin" "$tree/usr/bin/starling"
for unit in starling-node.service starling-tracker.service; do
    # The units' own text tells a manual install to use /usr/local/bin; the package's is /usr/bin.
    sed -e 's|/usr/local/bin/starling|/usr/bin/starling|g' \
        -e 's|^#   install -m 0755 starling /usr/bin/starling$|#   (installed by the starling package: binary, user, examples in /etc/starling)|' \
        "config/$unit" > "$tree/usr/lib/systemd/system/$unit"
    chmod 0644 "$tree/usr/lib/systemd/system/$unit"
done
install -m 0644 config/starling.sysusers "$tree/usr/lib/sysusers.d/starling.conf"
for example in tracker.yaml seeder.yaml peer.yaml tracker-only.yaml; do
    install -m 0644 "config/$example" "$tree/etc/starling/$example"
done
install -m 0644 config/README.md "$tree/usr/share/doc/starling/config.md"
# bash-completion sources the file: no #! line.
"$bin" --generate-completion-script bash | sed '1{/^#!/d}' > "$tree/usr/share/bash-completion/completions/starling"
"$bin" --generate-completion-script zsh > "$tree/usr/share/zsh/vendor-completions/_starling"
"$bin" --generate-completion-script fish > "$tree/usr/share/fish/vendor_completions.d/starling.fish"
chmod 0644 "$tree"/usr/share/*/completions/starling "$tree"/usr/share/*/vendor*/*

# The man page: help2man over the top-level --help, each subcommand's --help as a section.
include=$work/man.include
{
    echo "[COMMANDS]"
    for sub in $("$bin" --help | sed -n '/^SUBCOMMANDS:/,/^$/p' | awk 'NR>1 && $1 != "" {print $1}'); do
        echo ".SS \"starling $sub\""
        echo ".nf"
        COLUMNS=80 "$bin" "$sub" --help | sed -e 's/\\/\\\\/g' -e 's/^\./\\\&./' -e "s/^'/\\\\\&'/"
        echo ".fi"
    done
    echo "[FILES]"
    echo "/etc/starling/*.yaml: example node configurations (starling node --config)."
    echo ".br"
    echo "/usr/lib/systemd/system/starling-node.service, starling-tracker.service: the services (not enabled)."
    echo "[SEE ALSO]"
    echo "/usr/share/doc/starling/config.md: the node configuration schema."
} > "$include"
COLUMNS=80 help2man --no-info --section=1 --name="push large artifacts to server fleets through a BitTorrent-compatible swarm" \
    --include="$include" --version-string="$version" -o "$work/starling.1" "$tree/usr/bin/starling"
gzip -9n -c "$work/starling.1" > "$tree/usr/share/man/man1/starling.1.gz"
chmod 0644 "$tree/usr/share/man/man1/starling.1.gz"

# The maintainer scripts (one POSIX sh body for both formats): the user from the sysusers
# entry (systemd-sysusers, else useradd, which Debian's required `passwd` and every rpm
# distribution's shadow-utils have), systemd told about the units when it runs.
# Nothing is enabled or started: the operator picks starling-node or starling-tracker.
cat > "$work/postinst.sh" <<'EOF'
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers /usr/lib/sysusers.d/starling.conf
elif ! getent passwd starling >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/starling --no-create-home --shell /usr/sbin/nologin \
        --comment "Starling artifact distribution" starling
fi
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
EOF
cat > "$work/postrm.sh" <<'EOF'
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
EOF
# On removal, a running service is stopped (its binary is going away); never started.
# Debian policy wants deb-systemd-invoke (init-system-helpers) there, systemctl elsewhere.
cat > "$work/prerm.sh" <<'EOF'
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl stop starling-node.service starling-tracker.service >/dev/null 2>&1 || true
fi
EOF
cat > "$work/prerm.deb.sh" <<'EOF'
if [ -d /run/systemd/system ] && command -v deb-systemd-invoke >/dev/null 2>&1; then
    deb-systemd-invoke stop starling-node.service starling-tracker.service >/dev/null 2>&1 || true
fi
EOF

summary="push large artifacts to server fleets through a BitTorrent swarm"
description="Starling pushes one large artifact (an rpm, a release tarball, a folder) to
tens or thousands of servers at once without saturating the source: every
receiver also serves. It has a BitTorrent-compatible tracker, seeder and
peer, UDP gossip that survives the tracker's loss, host-wide rate caps,
listen ports from a narrow range and Prometheus metrics on every process.
The binary needs only the C library."

# 6. The .deb.
if command -v dpkg-deb >/dev/null; then
    deb=$work/deb
    cp -a "$tree" "$deb"
    install -d -m 0755 "$deb/DEBIAN"
    gzip -9n -c > "$deb/usr/share/doc/starling/changelog.Debian.gz" <<EOF
starling ($version-1) unstable; urgency=medium

  * Built from commit $commit by scripts/package.sh.

 -- Starling maintainers <maintainers@starling.invalid>  $(date -R -u -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")
EOF
    cat > "$deb/usr/share/doc/starling/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: starling
Comment: The binary is linked statically with the Swift runtime and Foundation
 (Apache-2.0 with Runtime Library Exception), swift-nio, swift-argument-parser,
 swift-log, swift-metrics, swift-prometheus (Apache-2.0), Yams (MIT), OpenSSL 3
 libcrypto (Apache-2.0) and zlib (Zlib).

Files: *
Copyright: 2026 Starling maintainers
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
    # Yams (the YAML parser of node configs) carries libyaml's C sources; they are built in.
    install -d "$deb/usr/share/lintian/overrides"
    cat > "$deb/usr/share/lintian/overrides/starling" <<'EOF'
# Yams, the node configuration's YAML parser, compiles libyaml's sources into the binary:
# the binary is self-contained by design (it must run on hosts without any of its libraries).
starling: embedded-library libyaml [usr/bin/starling]
EOF
    chmod 0644 "$deb/usr/share/doc/starling/changelog.Debian.gz" "$deb/usr/share/doc/starling/copyright" \
        "$deb/usr/share/lintian/overrides/starling"
    (cd "$deb" && find etc -type f | sed 's|^|/|' | sort) > "$deb/DEBIAN/conffiles"
    size_kb=$(du -sk --exclude=DEBIAN "$deb" | cut -f1)
    cat > "$deb/DEBIAN/control" <<EOF
Package: starling
Version: $version-1
Architecture: $debarch
Maintainer: Starling maintainers <maintainers@starling.invalid>
Installed-Size: $size_kb
Depends: libc6 (>= ${glibc#GLIBC_})
Section: net
Priority: optional
Homepage: https://starling.invalid/
Description: $summary
$(sed 's/^/ /' <<<"$description")
EOF
    for s in postinst postrm prerm; do
        {
            echo "#!/bin/sh"
            echo "set -e"
            case $s in
                postinst) echo 'if [ "$1" = configure ]; then' ;;
                prerm) echo 'if [ "$1" = remove ]; then' ;;
                postrm) echo 'if [ "$1" = remove ] || [ "$1" = purge ]; then' ;;
            esac
            sed 's/^/    /' "$work/$s$([ $s = prerm ] && echo .deb).sh"
            echo "fi"
            echo "exit 0"
        } > "$deb/DEBIAN/$s"
        chmod 0755 "$deb/DEBIAN/$s"
    done
    debfile=$out/starling_${version}-1_${debarch}.deb
    dpkg-deb --root-owner-group -Zxz --build "$deb" "$debfile" >/dev/null
    echo "$debfile: $(du -h "$debfile" | cut -f1)"
    if command -v lintian >/dev/null; then
        # Errors fail the package; warnings are printed. Suppressed: initial-upload-closes-no-bugs
        # (this is no upload to Debian's archive, there is no ITP bug to close).
        lintian --tag-display-limit 0 --suppress-tags initial-upload-closes-no-bugs "$debfile" 2>&1 \
            | grep -v '^running with root privileges' | tee "$work/lintian.txt" || true
        if grep -q '^E:' "$work/lintian.txt"; then echo "package.sh: lintian reports errors" >&2; exit 1; fi
    fi
fi

# 7. The .rpm, from the same tree.
if command -v rpmbuild >/dev/null; then
    rpmtop=$work/rpm
    mkdir -p "$rpmtop"/{BUILD,RPMS,SPECS,SRPMS,BUILDROOT}
    spec=$rpmtop/SPECS/starling.spec
    {
        cat <<EOF
Name: starling
Version: ${version//-/_}
Release: 1
Summary: $summary
License: Apache-2.0
URL: https://starling.invalid/
# The binary carries the Swift runtime, libcrypto and zlib: glibc is the only requirement.
AutoReqProv: no
Requires: glibc >= ${glibc#GLIBC_}
Requires(post): /bin/sh

%description
$description

%install
cp -a $tree/. %{buildroot}/
install -D -m 0644 $root/LICENSE %{buildroot}/usr/share/licenses/starling/LICENSE

%files
%dir /usr/share/licenses/starling
%license /usr/share/licenses/starling/LICENSE
/usr/bin/starling
/usr/lib/systemd/system/starling-node.service
/usr/lib/systemd/system/starling-tracker.service
/usr/lib/sysusers.d/starling.conf
%dir /etc/starling
%config(noreplace) /etc/starling/*.yaml
%dir /usr/share/doc/starling
%doc /usr/share/doc/starling/config.md
/usr/share/man/man1/starling.1.gz
/usr/share/bash-completion/completions/starling
/usr/share/zsh/vendor-completions/_starling
/usr/share/fish/vendor_completions.d/starling.fish

%post
EOF
        cat "$work/postinst.sh"
        echo
        echo "%preun"
        echo 'if [ "$1" = 0 ]; then'
        sed 's/^/    /' "$work/prerm.sh"
        echo "fi"
        echo
        echo "%postun"
        cat "$work/postrm.sh"
    } > "$spec"
    # Stripping and build-id links were done above or are not wanted: the binary goes in as is.
    rpmbuild -bb --quiet --define "_topdir $rpmtop" --define "_build_id_links none" \
        --define "__strip /bin/true" --define "__os_install_post %{nil}" --define "debug_package %{nil}" \
        --define "_binary_payload w6.xzdio" "$spec" >/dev/null
    rpmfile=$(find "$rpmtop/RPMS" -name '*.rpm' | head -1)
    cp "$rpmfile" "$out/"
    rpmfile=$out/$(basename "$rpmfile")
    echo "$rpmfile: $(du -h "$rpmfile" | cut -f1); requires: $(rpm -qpR "$rpmfile" 2>/dev/null | grep -v '^rpmlib(' | tr '\n' ' ')"
fi

(cd "$out" && sha256sum "$(basename "$bin")" ${debfile:+"$(basename "$debfile")"} ${rpmfile:+"$(basename "$rpmfile")"} > SHA256SUMS)
echo "done: $out"
