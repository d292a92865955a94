#!/bin/sh
# Cut a Debian-based image's tree down to what the worker and the manager run, in the `rootfs`
# stage of worker/Dockerfile (whose final stage copies the result onto an empty image). Made for
# the offline base (claude-orchestrator-base) and for python:3.11-slim-bookworm (its Python lives
# in /usr/local; paths are asked of Python and of dpkg, not assumed).
#
# Gone: the tools that only install or build (apt, dpkg, debconf, perl, useradd, binutils, the
# wheels of pip and setuptools), documentation and translations, the parts of the standard
# library no program imports (test, idlelib, tkinter, lib2to3, distutils, ensurepip, pydoc's
# topics), git's servers and Perl commands, OpenSSH's agent, scp, sftp and key helpers, the tools
# of disks, mounts and the journal with the libraries only they link, and the iconv modules of
# charsets other than Unicode and the Latin ones. The standard library stays whole otherwise, as
# bytecode only (bytecode-only.py, beside this script). Git keeps every command the project and
# Claude Code run: only its Perl commands (send-email, svn, cvs) are gone.
# /var/lib/dpkg/status stays, listing the packages that remain, for image scanners.
#
# Then it checks what is left: every ELF file finds its libraries, and git, python3, ssh, bash
# and the Python modules the project needs start. Any failure fails the build.
set -eu

# Packages whose files go (those not installed are skipped). Their maintainer scripts are not run:
# they would need perl and dpkg, which go with them. The libraries of block devices, mounts, udev,
# the journal and hardware keys go with the programs that link them (below).
DROP_PACKAGES="
    apt libapt-pkg6.0 gpgv debian-archive-keyring
    dpkg debconf debconf-i18n init-system-helpers usrmerge adduser passwd
    perl perl-base perl-modules-5.36 libperl5.36 liberror-perl
    libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl
    e2fsprogs logsave libss2 libext2fs2
    python3-pip-whl python3-setuptools-whl python3-venv python3.11-venv
    python3-distutils python3-lib2to3
    git-man
    binutils binutils-common binutils-x86-64-linux-gnu binutils-aarch64-linux-gnu
    libbinutils libctf0 libctf-nobfd0 libgprofng0 libjansson4
    libstdc++6 libsemanage2 libsemanage-common libsepol2 libseccomp2 libxxhash0
    libgdbm6 libgdbm-compat4
    libmount1 mount libblkid1 libsmartcols1 libudev1 libsystemd0 libgcrypt20 libgpg-error0
    liblz4-1 libfido2-1 libcbor0.8
"

say() { printf 'slim-rootfs: %s\n' "$*"; }

# --- packages ----------------------------------------------------------------------------------
dropped=""
if command -v dpkg-query >/dev/null 2>&1; then
    for package in $DROP_PACKAGES; do
        if dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q ' installed$'; then
            dropped="$dropped $package"
        fi
    done
    # shellcheck disable=SC2086  # one word per package
    dpkg-query -L $dropped > /tmp/dropped-paths
    # Files and links first, then the directories that became empty, deepest first. A path that
    # is a directory, or a link to one (/bin, /lib and /sbin are links into /usr), stays.
    while IFS= read -r path; do
        if [ ! -d "$path" ]; then rm -f "$path"; fi
    done < /tmp/dropped-paths
    sort -r /tmp/dropped-paths | while IFS= read -r path; do
        if [ -d "$path" ] && [ ! -L "$path" ]; then rmdir "$path" 2>/dev/null || true; fi
    done
    # The package list without the dropped packages (paragraphs are separated by blank lines).
    python3 - "$dropped" <<'EOF'
import sys
dropped = set(sys.argv[1].split())
path = "/var/lib/dpkg/status"
paragraphs = open(path, encoding="utf-8").read().strip().split("\n\n")
kept = [p for p in paragraphs if p.split("\n", 1)[0].removeprefix("Package: ") not in dropped]
open(path, "w", encoding="utf-8").write("\n\n".join(kept) + "\n")
EOF
    find /var/lib/dpkg -mindepth 1 -maxdepth 1 ! -name status -exec rm -rf {} +
    say "dropped packages:$dropped"
fi

# --- files -------------------------------------------------------------------------------------
rm -rf /etc/apt /etc/dpkg /etc/alternatives/README /var/lib/apt /var/cache/* /var/log/* \
    /usr/share/man /usr/share/info /usr/share/lintian /usr/share/linda /usr/share/bug \
    /usr/share/doc-base /usr/share/menu /usr/share/bash-completion /usr/share/gitweb \
    /usr/share/python-wheels /usr/share/perl5 /usr/local/share/man
# Documentation but the copyright notices; translations but the alias table.
if [ -d /usr/share/doc ]; then
    find /usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
    find /usr/share/doc -mindepth 1 -type d -empty -delete
fi
if [ -d /usr/share/locale ]; then
    find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
fi
# Git's servers, its Perl commands and git-http-fetch (only fetched packfile URIs, which a client
# asks for only when fetch.uriProtocols is set) go; every client command stays.
for name in git-daemon git-http-backend git-http-fetch git-http-push git-imap-send git-shell \
            scalar git-add--interactive git-instaweb git-archimport git-cvsexportcommit \
            git-cvsimport git-cvsserver git-send-email git-svn; do
    rm -f "/usr/lib/git-core/$name" "/usr/bin/$name"
done
# OpenSSH's client stays (git's transport; ssh-keygen for signatures): its agent, file copy,
# key scan and hardware-key helpers go, the setuid ssh-keysign with them.
rm -f /usr/bin/ssh-add /usr/bin/ssh-agent /usr/bin/ssh-keyscan /usr/bin/scp /usr/bin/sftp \
    /usr/bin/ssh-argv0 /usr/bin/ssh-copy-id
rm -rf /usr/lib/openssh
# What builds locales and iconv's cache at install time (ldconfig stays: ctypes.util asks it),
# the openssl command (the library and its configuration stay), a maths library no program here
# links (libmvec), Brotli's encoder (curl only decodes), the leap-second time zones.
rm -f /usr/bin/localedef /usr/sbin/iconvconfig /usr/bin/openssl \
    /usr/lib/*-linux-gnu/libmvec.so.* /usr/lib/*-linux-gnu/libbrotlienc.so.*
rm -rf /usr/share/zoneinfo/right /usr/lib/ssl/misc
# Debian ships git twice (/usr/bin/git and /usr/lib/git-core/git): one file, two names.
if cmp -s /usr/bin/git /usr/lib/git-core/git; then ln -f /usr/bin/git /usr/lib/git-core/git; fi
# iconv modules: the Unicode and Latin ones stay (git re-encodes commit messages with them).
for gconv in /usr/lib/*-linux-gnu/gconv; do
    [ -d "$gconv" ] || continue
    find "$gconv" -maxdepth 1 -name '*.so' ! -name 'UTF-*' ! -name 'UNICODE.so' \
        ! -name 'ISO8859-*' ! -name 'CP125*' -delete
    rm -rf "$gconv"/gconv-modules.cache
done
# The standard library: what no program imports at run time.
stdlib=$(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')
for name in test idlelib tkinter turtledemo lib2to3 distutils ensurepip pydoc_data \
            turtle.py config-3.11-x86_64-linux-gnu config-3.11-aarch64-linux-gnu; do
    rm -rf "${stdlib:?}/$name"
done
rm -f "$stdlib"/lib-dynload/_test*.so "$stdlib"/lib-dynload/_ctypes_test.*.so \
    "$stdlib"/lib-dynload/_xxtestfuzz.*.so "$stdlib"/lib-dynload/xxlimited*.so
# python:3.11-slim's own pip, setuptools and wheel (the venv has its own packages).
purelib=$(python3 -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
for name in pip setuptools wheel _distutils_hack pkg_resources; do
    rm -rf "${purelib:?}/$name" "$purelib/$name"-*.dist-info
done
rm -f "$purelib/distutils-precedence.pth" /usr/local/bin/pip* /usr/local/bin/wheel \
    /usr/local/bin/idle* /usr/local/bin/pydoc* /usr/local/bin/2to3*
# Then every module as bytecode compiled once (bytecode-only.py, beside this script); os.py stays
# as the landmark by which Python finds its standard library.
python3 "$(dirname "$0")/bytecode-only.py" --keep os.py "$stdlib"
# Links that pointed at what went (alternatives of dropped tools, for example).
find /etc /usr -xdev -type l ! -exec test -e {} \; -delete
rm -rf /tmp/* /var/tmp/* /root/.cache

# --- checks ------------------------------------------------------------------------------------
# Every ELF file must find its libraries. A program that needs one of the libraries dropped on
# purpose (mount, lsblk, swapon, logger...: none works in an unprivileged container) goes too.
elf_files() {
    find / -xdev \( -path /proc -o -path /sys -o -path /dev \) -prune -o -type f \
        \( -perm -u+x -o -name '*.so' -o -name '*.so.*' \) -print \
    | while IFS= read -r file; do
          [ "$(head -c 4 "$file" | od -An -c | tr -d ' ')" = '177ELF' ] && printf '%s\n' "$file"
      done
}
DROPPED_LIBRARIES="libmount.so.1 libblkid.so.1 libsmartcols.so.1 libudev.so.1 libsystemd.so.0
    libgcrypt.so.20 libgpg-error.so.0 liblz4.so.1 libfido2.so.1 libcbor.so.0.8"
went="" missing=""
for file in $(elf_files); do
    needs=$(ldd "$file" 2>/dev/null | sed -n 's/^[[:space:]]*\([^ ]*\) => not found.*/\1/p')
    [ -n "$needs" ] || continue
    for library in $needs; do
        case " $(echo $DROPPED_LIBRARIES) " in
            *" $library "*) ;;
            *) missing="$missing
$file: $library" ;;
        esac
    done
    went="$went ${file##*/}"
    rm -f "$file"
done
if [ -n "$missing" ]; then
    printf 'slim-rootfs: error: libraries are missing:%s\n' "$missing" >&2
    exit 1
fi
say "programs that needed a dropped library:$went"
git --version >/dev/null
ssh -V 2>/dev/null
bash -c true
python3 -c 'import ssl, sqlite3, zoneinfo, venv, json, asyncio, multiprocessing
import ctypes, lzma, bz2, zlib, unittest'
say "done: $(du -sxm / 2>/dev/null | cut -f1) MB left"
