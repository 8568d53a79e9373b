#!/usr/bin/env bash
# Record real L2TPv2 exchanges between two xl2tpd instances (one LNS, one LAC)
# as pcap fixtures for l2tpkit's decoder tests. The stock Debian xl2tpd is used
# for every scenario except `hidden` (see "Hidden AVPs" below).
#
# Usage (as root):  captures/record.sh [basic|hello|secret|hidden|hidden-stock ...]
#   No argument records every scenario. Each scenario overwrites
#   captures/xl2tpd-<scenario>.pcap.
#   L2TPKIT_REC_LOGDIR=DIR  keeps the xl2tpd / fake-pppd logs of each run in DIR.
#
# How it works: every scenario runs in its own network + mount namespace
# (`unshare -n -m --propagation private`), so
#   * the capture on `lo` sees only this run's packets and nothing of other
#     users of the shared machine, and 127.0.0.2:1701 / 127.0.0.3:1701 can
#     never clash with another xl2tpd on the host;
#   * the pppd stand-in can be bind-mounted over /usr/sbin/pppd without the
#     host seeing it.
# LNS = 127.0.0.2:1701, LAC = 127.0.0.3:1701 (both on the namespace's lo).
#
# The pppd stand-in (there is no kernel PPP here) differs by role, chosen by an
# environment variable that xl2tpd passes through to the pppd it execs:
#   LNS: `stty raw -echo; exec cat`   -> echoes every PPP frame back (data loopback)
#   LAC: writes 3 async-HDLC framed LCP Configure-Requests (with a valid FCS),
#        then `exec cat >/dev/null`    -> 3 data frames LAC->LNS, 3 echoed back.
#   LAC in the `hello` scenario writes nothing, so no data flows at all.
# (If both ends echoed, a single frame would bounce between them forever.)
#
# Scenarios (-> captures/xl2tpd-<name>.pcap):
#   basic         no secret; tunnel, one call, 6 data frames, CDN, StopCCN
#   hello         as basic but no data; held until both ends sent HELLO (~60 s)
#   secret        challenge = yes on both ends (Challenge / Challenge Response AVPs)
#   hidden        hidden bit = yes + secret, xl2tpd built with -DTEST_HIDDEN (see below)
#   hidden-stock  hidden bit = yes + secret with the stock Debian xl2tpd
#
# Hidden AVPs: the stock xl2tpd never sets the H bit. With "hidden bit = yes" it
# only adds a Random Vector AVP to its control messages; the one AVP it knows
# how to hide (Assigned Session ID, in ICRQ/ICRP/CDN) is hidden only when built
# with -DTEST_HIDDEN, and that code path no longer compiles in 1.3.18 (it uses a
# variable `raw` that was renamed). For the `hidden` scenario this script
# therefore fetches the source of the installed xl2tpd version with apt-get
# (private, temporary apt lists; nothing under /etc or /var/lib/apt changes),
# applies a 4-line fix to add_callid_avp(), builds it with -DTEST_HIDDEN and
# runs it for both LNS and LAC. The hiding itself is xl2tpd's own encrypt_avp().
# Set XL2TPD_TEST_HIDDEN_BIN=/path/to/xl2tpd to use an already built binary.
#
# Teardown goes through the LAC's control pipe (xl2tpd -C FILE):
#   "h <local call id>"  hangs up the call (xl2tpd kills the pppd -> CDN). The
#                        argument is the LAC's *numeric* local call ID from its
#                        "Call established ... Local: N" log line;
#                        "h cluster" does not work (atoi("cluster") == 0).
#   "d cluster"          tears the tunnel down by LAC name (-> StopCCN).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
ALL_SCENARIOS=(basic hello secret hidden hidden-stock)

LNS_ADDR=127.0.0.2
LAC_ADDR=127.0.0.3
# Tunnel secret for the secret and hidden scenarios (l2tp-secrets: "us them secret").
TUNNEL_SECRET='l2tpkit-tunnel-secret'
HELLO_WAIT=100          # seconds to wait for HELLOs in the hello scenario (xl2tpd: 60 s)

log() { printf '[record %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --------------------------------------------------------------------------
# Outer mode: run each scenario in its own namespaces, as a child we own.
# --------------------------------------------------------------------------
outer_main() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (namespaces, bind mount, capture)"
    local missing=()
    command -v xl2tpd >/dev/null || missing+=(xl2tpd)
    command -v tshark >/dev/null || missing+=(tshark)
    command -v tcpdump >/dev/null || missing+=(tcpdump)
    if ((${#missing[@]})); then
        log "installing missing packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi

    local scenarios=("$@")
    ((${#scenarios[@]})) || scenarios=("${ALL_SCENARIOS[@]}")
    local sc
    for sc in "${scenarios[@]}"; do
        case " ${ALL_SCENARIOS[*]} " in
            *" $sc "*) ;;
            *) die "unknown scenario '$sc' (known: ${ALL_SCENARIOS[*]})" ;;
        esac
    done

    CHILD=
    BUILD_TMP=
    outer_cleanup() {
        local rc=$?
        trap - EXIT INT TERM
        if [[ -n ${CHILD:-} ]] && kill -0 "$CHILD" 2>/dev/null; then
            kill -TERM "$CHILD" 2>/dev/null || true
            wait "$CHILD" 2>/dev/null || true
        fi
        if [[ -n ${BUILD_TMP:-} && -d $BUILD_TMP ]]; then rm -rf -- "$BUILD_TMP"; fi
        exit "$rc"
    }
    trap outer_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    local test_hidden_bin=${XL2TPD_TEST_HIDDEN_BIN:-}
    for sc in "${scenarios[@]}"; do
        if [[ $sc == hidden && -z $test_hidden_bin ]]; then
            build_test_hidden_xl2tpd
            test_hidden_bin=$BUILD_TMP/src/xl2tpd
        fi
    done

    for sc in "${scenarios[@]}"; do
        log "=== scenario $sc ==="
        local bin=/usr/sbin/xl2tpd
        [[ $sc == hidden ]] && bin=$test_hidden_bin
        # unshare execs the inner script directly (no --fork): $CHILD is the inner bash.
        XL2TPD_BIN=$bin unshare -n -m --propagation private "$SELF" __inner "$sc" "$HERE/xl2tpd-$sc.pcap" &
        CHILD=$!
        local rc=0
        wait "$CHILD" || rc=$?
        CHILD=
        ((rc == 0)) || die "scenario $sc failed (rc=$rc)"
    done
    write_provenance
    log "done: ${scenarios[*]}"
}

# Build the installed xl2tpd version from its Debian source with -DTEST_HIDDEN.
build_test_hidden_xl2tpd() {
    local tool
    for tool in gcc make patch dpkg-source; do
        command -v "$tool" >/dev/null || die "building the TEST_HIDDEN xl2tpd needs $tool"
    done
    BUILD_TMP=$(mktemp -d /tmp/l2tpkit-xl2tpd-build.XXXXXX)
    local ver codename
    ver=$(dpkg-query -W -f '${Version}' xl2tpd)
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    log "building xl2tpd $ver with -DTEST_HIDDEN in $BUILD_TMP"
    mkdir -p "$BUILD_TMP/lists/partial" "$BUILD_TMP/cache/archives/partial"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $codename main" \
        >"$BUILD_TMP/sources.list"
    local apt_opts=(-q -o "Dir::Etc::SourceList=$BUILD_TMP/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$BUILD_TMP/lists" -o "Dir::Cache=$BUILD_TMP/cache"
        -o APT::Sandbox::User=root)
    (cd "$BUILD_TMP" &&
        timeout 300 apt-get "${apt_opts[@]}" update >apt.log 2>&1 &&
        timeout 300 apt-get "${apt_opts[@]}" source --download-only "xl2tpd=$ver" >>apt.log 2>&1 &&
        dpkg-source -x ./*.dsc src >>apt.log 2>&1) ||
        { cat "$BUILD_TMP/apt.log" >&2; die "fetching the xl2tpd source failed"; }
    # The TEST_HIDDEN branch of add_callid_avp() refers to `raw`, which 1.3.x renamed;
    # reserve the two spare bytes encrypt_avp() expects in front of the plain AVP instead.
    patch -d "$BUILD_TMP/src" -p0 >/dev/null <<'EOF'
--- avpsend.c
+++ avpsend.c
@@ -175,17 +175,21 @@
 int add_callid_avp (struct buffer *buf, _u16 callid)
 {
 #endif
-    struct half_words *ptr = (struct half_words *) (buf->start + buf->len + sizeof(struct avp_hdr));
 #ifdef TEST_HIDDEN
+    /* encrypt_avp() expects the plain AVP two bytes past the hidden one */
     if (t->hbit)
-        raw++;
+        buf->len += 2;
 #endif
+    struct half_words *ptr = (struct half_words *) (buf->start + buf->len + sizeof(struct avp_hdr));
     add_header(buf, 0x8, 0xE);
     ptr->s0 = htons (callid);
     buf->len += 0x8;
 #ifdef TEST_HIDDEN
     if (t->hbit)
+    {
+        buf->len -= 2;
         encrypt_avp (buf, 8, t);
+    }
 #endif
     return 0;
 }
EOF
    # Same defines as debian/rules, plus TEST_HIDDEN.
    make -C "$BUILD_TMP/src" xl2tpd \
        CFLAGS="-DDEBUG_PPPD -DTRUST_PPPD_TO_DIE -DTEST_HIDDEN -O2 -fno-builtin -Wall -DSANITY -DLINUX -DIP_ALLOCATION -DUSE_KERNEL" \
        >"$BUILD_TMP/build.log" 2>&1 || { tail -n 30 "$BUILD_TMP/build.log" >&2; die "building xl2tpd failed"; }
    log "built: $("$BUILD_TMP/src/xl2tpd" -v 2>&1 | tr -s '\n' ' ')"
}

# --------------------------------------------------------------------------
# PROVENANCE.md: everything below MARKER is regenerated from the pcaps.
# --------------------------------------------------------------------------
PROV_MARKER='<!-- Everything below this line is generated by captures/record.sh from the pcap files; do not edit. -->'

scenario_notes() {
    case $1 in
        basic) echo "Stock xl2tpd on both ends, no tunnel secret (challenge = no, hidden bit = no)." ;;
        hello) echo "Stock xl2tpd, no secret; no PPP data at all (the LAC stand-in stays silent); held until both ends sent HELLO (~60 s)." ;;
        secret) echo "Stock xl2tpd, \`challenge = yes\` on both ends, tunnel secret \`$TUNNEL_SECRET\` (l2tp-secrets line \`* * $TUNNEL_SECRET\`)." ;;
        hidden) echo "xl2tpd $(dpkg-query -W -f '${Version}' xl2tpd 2>/dev/null) rebuilt from its Debian source with \`-DTEST_HIDDEN\` (+ the add_callid_avp fix in record.sh) on both ends; \`challenge = yes\`, \`hidden bit = yes\`, tunnel secret \`$TUNNEL_SECRET\`." ;;
        hidden-stock) echo "Stock xl2tpd, \`challenge = yes\`, \`hidden bit = yes\`, tunnel secret \`$TUNNEL_SECRET\`. Stock xl2tpd hides nothing: Random Vector AVPs only." ;;
    esac
}

# One markdown table row per L2TP packet. AVP types are read from the raw UDP
# payload (an AVP header is never hidden); hidden ones are marked with H.
frame_table() {
    echo '| frame | time (s) | from → to | L2TP | tunnel | session | Ns | Nr | message | AVP types (H = hidden) |'
    echo '|---|---|---|---|---|---|---|---|---|---|'
    tshark -n -r "$1" -Y l2tp -T fields -E separator='|' \
        -e frame.number -e frame.time_relative -e ip.src -e ip.dst -e l2tp.tunnel -e l2tp.session \
        -e l2tp.Ns -e l2tp.Nr -e udp.payload 2>/dev/null |
    awk -F'|' '
    BEGIN {
        split("SCCRQ SCCRP SCCCN StopCCN - HELLO OCRQ OCRP OCCN ICRQ ICRP ICCN - CDN WEN SLI", names, " ")
    }
    # plain POSIX awk (mawk): no strtonum()/and()
    function hx(s, off, n,    i, v) {
        v = 0
        for (i = 1; i <= n * 2; i++) v = v * 16 + index("0123456789abcdef", tolower(substr(s, off * 2 + i, 1))) - 1
        return v
    }
    function bit(v, b) { return int(v / 2 ^ b) % 2 }
    {
        p = $9; len = length(p) / 2
        flags = hx(p, 0, 2); ctl = bit(flags, 15)
        off = 2
        if (bit(flags, 14)) off += 2
        off += 4
        if (bit(flags, 11)) off += 4
        if (bit(flags, 9)) off += 2 + hx(p, off, 2)
        msg = ""; avps = ""
        if (ctl) {
            while (off + 6 <= len) {
                h = hx(p, off, 2); alen = h % 1024; hid = bit(h, 14); vid = hx(p, off + 2, 2); typ = hx(p, off + 4, 2)
                if (alen < 6) break
                a = (vid ? vid ":" : "") typ (hid ? "H" : "")
                avps = avps (avps == "" ? "" : ",") a
                if (typ == 0 && vid == 0 && !hid) { mt = hx(p, off + 6, 2); msg = (mt in names) ? names[mt] " (" mt ")" : "type " mt }
                off += alen
            }
            if (avps == "") { msg = "ZLB"; avps = "-" }
        } else { msg = "data (PPP " len - off " bytes)"; avps = "-" }
        printf "| %s | %.6f | %s → %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, (ctl ? "control" : "data"), $5, $6, ($7 == "" ? "-" : $7), ($8 == "" ? "-" : $8), msg, avps
    }'
}

write_provenance() {
    local prov=$HERE/PROVENANCE.md tmp f sc first
    [[ -f $prov ]] || printf '# Provenance of the xl2tpd captures\n\n' >"$prov"
    tmp=$(mktemp "$HERE/.PROVENANCE.md.XXXXXX")
    if grep -qF -- "$PROV_MARKER" "$prov"; then
        sed "/^$(printf '%s' "$PROV_MARKER" | sed 's/[][\/.*^$]/\\&/g')\$/,\$d" "$prov" >"$tmp"
    else
        cat "$prov" >"$tmp"; echo >>"$tmp"
    fi
    {
        echo "$PROV_MARKER"
        echo
        echo "## Per-file listings"
        echo
        echo "Tools when this section was generated: xl2tpd $(dpkg-query -W -f '${Version}' xl2tpd 2>/dev/null)" \
            "(\`$(xl2tpd -v 2>&1 | tr -s '\n' ' ' | sed 's/^ *//; s/ *$//')\`)," \
            "$(tshark -v 2>/dev/null | head -n1 | sed 's/\.$//')," \
            "$(tcpdump --version 2>&1 | head -n1), $(tcpdump --version 2>&1 | sed -n 2p), kernel $(uname -r)."
        for sc in "${ALL_SCENARIOS[@]}"; do
            f=$HERE/xl2tpd-$sc.pcap
            [[ -f $f ]] || continue
            first=$(tshark -n -r "$f" -c 1 -T fields -e frame.time_epoch 2>/dev/null | cut -d. -f1)
            echo
            echo "### xl2tpd-$sc.pcap"
            echo
            echo "- made by: \`captures/record.sh $sc\` (as root)"
            echo "- first packet: $(date -u -d "@$first" '+%Y-%m-%d %H:%M:%S UTC') (machine clock)"
            echo "- $(scenario_notes "$sc")"
            echo "- $(stat -c %s "$f") bytes, $(tshark -n -r "$f" -T fields -e frame.number 2>/dev/null | wc -l) packets, pcap (not pcapng), linktype EN10MB (Ethernet, from \`tcpdump -i lo\`), filter \`udp port 1701\`"
            echo "- LAC = 127.0.0.3:1701, LNS = 127.0.0.2:1701"
            echo
            frame_table "$f"
        done
    } >>"$tmp"
    chmod 644 "$tmp"
    mv -f "$tmp" "$prov"
    log "updated $prov"
}

# --------------------------------------------------------------------------
# Inner mode: one scenario, inside private net + mount namespaces.
# --------------------------------------------------------------------------
TMP=
SCENARIO=
TCPDUMP_PID=
LNS_PID=
LAC_PID=

# Children of a process, by its PID (from /proc, no name matching).
children_of() {
    local pid=$1 f
    for f in /proc/"$pid"/task/*/children; do
        [[ -r $f ]] && cat "$f" 2>/dev/null
    done | tr ' ' '\n' | sed '/^$/d'
}

stop_pid() {   # stop_pid PID SIGNAL: signal it, wait for it (it is our child)
    local pid=$1 sig=${2:-TERM}
    [[ -n $pid ]] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill "-$sig" "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 50; i++)); do       # up to 5 s, then SIGKILL
        kill -0 "$pid" 2>/dev/null || break
        # a zombie child still answers kill -0; wait reaps it below
        [[ $(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null) == Z ]] && break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && [[ $(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null) != Z ]] \
        && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}

stop_xl2tpd() {  # kill any leftover pppd stand-ins first (by PID) so xl2tpd reaps them
    local pid=$1 c
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        for c in $(children_of "$pid"); do
            kill -TERM "$c" 2>/dev/null || true
        done
        sleep 0.3
    fi
    stop_pid "$pid" TERM
}

save_logs() {   # optional: keep this run's logs and configs
    [[ -n ${L2TPKIT_REC_LOGDIR:-} ]] || return 0
    mkdir -p "$L2TPKIT_REC_LOGDIR"
    local f
    for f in lac.log lns.log ppp-lac.log ppp-lns.log tcpdump.log lac.conf lns.conf l2tp-secrets cap.pcap; do
        if [[ -e $TMP/$f ]]; then cp "$TMP/$f" "$L2TPKIT_REC_LOGDIR/$SCENARIO-$f"; fi
    done
}

inner_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$TCPDUMP_PID" INT
    stop_xl2tpd "$LAC_PID"
    stop_xl2tpd "$LNS_PID"
    TCPDUMP_PID= LAC_PID= LNS_PID=
    umount /usr/sbin/pppd 2>/dev/null || true
    if [[ -n $TMP && -d $TMP ]]; then
        save_logs
        if ((rc != 0)); then
            log "failed; last log lines:"
            tail -n 25 "$TMP"/lac.log "$TMP"/lns.log "$TMP"/tcpdump.log >&2 2>/dev/null || true
        fi
        rm -rf -- "$TMP"
    fi
    exit "$rc"
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s, bounded.
wait_for() {
    local secs=$1 what=$2; shift 2
    local deadline=$((SECONDS + secs))
    while ! "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timeout after ${secs}s waiting for: $what"
        sleep 0.2
    done
    log "ok: $what"
}

log_has() { grep -q -- "$2" "$1"; }

# Count control messages of a given type (tshark l2tp.avp.message_type) so far.
count_msg() {
    tshark -n -r "$TMP/cap.pcap" -Y "l2tp.avp.message_type == $1" -T fields -e frame.number 2>/dev/null | wc -l
}
capture_has_msg() { (($(count_msg "$1") >= ${2:-1})); }
count_data() {
    tshark -n -r "$TMP/cap.pcap" -Y "l2tp.type == 0" -T fields -e frame.number 2>/dev/null | wc -l
}
capture_has_data() { (($(count_data) >= $1)); }

# Send a command to an xl2tpd control FIFO (bounded: the open blocks without a reader).
control() {
    local fifo=$1 cmd=$2
    log "control $(basename "$fifo"): $cmd"
    timeout 5 bash -c 'printf "%s\n" "$2" > "$1"' _ "$fifo" "$cmd"
}

write_fake_pppd() {
    # One script for both roles; xl2tpd execs it with its own environment,
    # so L2TPKIT_PPP_ROLE (set when starting each xl2tpd) selects the behaviour.
    # The three frames are async-HDLC (RFC 1662) framed LCP Configure-Requests,
    # id 1..3, options MRU=1500 and Magic-Number "L2TQ"/"L2TR"/"L2TS", with a valid FCS-16
    # and control characters escaped; xl2tpd strips flags, escapes and the FCS.
    cat >"$1" <<'EOF'
#!/bin/sh
# pppd stand-in for l2tpkit captures (no kernel PPP on this machine).
stty raw -echo 2>/dev/null
echo "fake pppd role=${L2TPKIT_PPP_ROLE:-?} pid=$$ args: $*" >>"${L2TPKIT_PPP_LOG:-/dev/null}"
case "${L2TPKIT_PPP_ROLE:-echo}" in
  lac-data)
    sleep 1
    printf '\176\377\175\043\300\041\175\041\175\041\175\040\175\056\175\041\175\044\175\045\334\175\045\175\046\114\062\124\121\220\154\176'
    sleep 0.3
    printf '\176\377\175\043\300\041\175\041\175\042\175\040\175\056\175\041\175\044\175\045\334\175\045\175\046\114\062\124\122\374\120\176'
    sleep 0.3
    printf '\176\377\175\043\300\041\175\041\175\043\175\040\175\056\175\041\175\044\175\045\334\175\045\175\046\114\062\124\123\330\104\176'
    exec cat >/dev/null ;;
  silent)
    exec cat >/dev/null ;;
  *)
    exec cat ;;
esac
EOF
    chmod 755 "$1"
}

write_configs() {
    local sc=$1 challenge=no hidden=no
    case $sc in
        secret) challenge=yes ;;
        hidden | hidden-stock) challenge=yes; hidden=yes ;;
    esac
    : >"$TMP/options.empty"
    # l2tp-secrets format: "us them secret"; '*' matches any host name.
    printf '# l2tpkit capture secrets: us them secret\n*\t*\t%s\n' "$TUNNEL_SECRET" >"$TMP/l2tp-secrets"
    cat >"$TMP/lns.conf" <<EOF
[global]
listen-addr = $LNS_ADDR
port = 1701
access control = no
force userspace = yes
auth file = $TMP/l2tp-secrets
debug avp = yes
debug network = yes
debug state = yes
debug tunnel = yes
[lns default]
ip range = 198.19.128.10-198.19.128.250
local ip = 198.19.128.1
require authentication = no
refuse pap = yes
refuse chap = yes
challenge = $challenge
hidden bit = $hidden
length bit = yes
pppoptfile = $TMP/options.empty
EOF
    cat >"$TMP/lac.conf" <<EOF
[global]
listen-addr = $LAC_ADDR
port = 1701
access control = no
force userspace = yes
auth file = $TMP/l2tp-secrets
debug avp = yes
debug network = yes
debug state = yes
debug tunnel = yes
[lac cluster]
lns = $LNS_ADDR
autodial = yes
redial = no
require authentication = no
refuse pap = yes
refuse chap = yes
challenge = $challenge
hidden bit = $hidden
length bit = yes
pppoptfile = $TMP/options.empty
EOF
}

inner_main() {
    local sc=$1 out=$2
    SCENARIO=$sc
    XL2TPD_BIN=${XL2TPD_BIN:-/usr/sbin/xl2tpd}
    log "xl2tpd binary: $XL2TPD_BIN"
    trap inner_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    TMP=$(mktemp -d /tmp/l2tpkit-record.XXXXXX)
    ip link set lo up

    write_fake_pppd "$TMP/fake-pppd"
    mount --bind "$TMP/fake-pppd" /usr/sbin/pppd
    write_configs "$sc"

    # Capture first. -U: flush per packet (so we can poll the file); -Z root:
    # do not drop privileges (the temp dir is root-only).
    tcpdump -i lo -n -U -Z root -s 0 -w "$TMP/cap.pcap" 'udp port 1701' \
        >"$TMP/tcpdump.log" 2>&1 &
    TCPDUMP_PID=$!
    wait_for 10 "tcpdump listening" log_has "$TMP/tcpdump.log" "listening on"

    L2TPKIT_PPP_ROLE=echo L2TPKIT_PPP_LOG="$TMP/ppp-lns.log" \
        "$XL2TPD_BIN" -D -c "$TMP/lns.conf" -s "$TMP/l2tp-secrets" -p "$TMP/lns.pid" -C "$TMP/lns.ctl" \
        >"$TMP/lns.log" 2>&1 &
    LNS_PID=$!
    wait_for 10 "LNS listening on $LNS_ADDR" log_has "$TMP/lns.log" "Listening on IP address"

    local lac_role=lac-data
    [[ $sc == hello ]] && lac_role=silent
    L2TPKIT_PPP_ROLE=$lac_role L2TPKIT_PPP_LOG="$TMP/ppp-lac.log" \
        "$XL2TPD_BIN" -D -c "$TMP/lac.conf" -s "$TMP/l2tp-secrets" -p "$TMP/lac.pid" -C "$TMP/lac.ctl" \
        >"$TMP/lac.log" 2>&1 &
    LAC_PID=$!

    wait_for 20 "LAC: Connection established" log_has "$TMP/lac.log" "Connection established"
    wait_for 20 "LAC: Call established" log_has "$TMP/lac.log" "Call established"

    case $sc in
        hello)
            # No data flows; wait for a HELLO from each end (~60 s idle timer).
            log "holding the idle tunnel for HELLO (up to ${HELLO_WAIT}s)"
            wait_for "$HELLO_WAIT" "HELLO from both ends" capture_has_msg 6 2
            sleep 1   # let the ZLB acks of the HELLOs through
            ;;
        *)
            # 3 frames LAC->LNS, echoed back by the LNS stand-in.
            wait_for 20 "6 data frames" capture_has_data 6
            sleep 0.5
            ;;
    esac

    # Teardown through the LAC's control pipe: hang up the call, then the tunnel.
    local cid
    cid=$(grep -o 'Call established with [^,]*, Local: [0-9]*' "$TMP/lac.log" | head -n1 | grep -o '[0-9]*$')
    [[ -n $cid ]] || die "could not find the LAC's local call ID in its log"
    control "$TMP/lac.ctl" "h $cid"
    wait_for 15 "CDN" capture_has_msg 14
    sleep 1
    control "$TMP/lac.ctl" "d cluster"
    wait_for 15 "StopCCN" capture_has_msg 4
    sleep 2   # the LNS's ZLB acknowledging the StopCCN

    stop_pid "$TCPDUMP_PID" INT
    TCPDUMP_PID=
    stop_xl2tpd "$LAC_PID"; LAC_PID=
    stop_xl2tpd "$LNS_PID"; LNS_PID=

    log "LAC log:"
    grep -E 'Connection established|Call established|Hanging up|Disconnecting|Goodbye' "$TMP/lac.log" >&2 || true

    # Overwrite the fixture atomically.
    cp "$TMP/cap.pcap" "$out.tmp.$$"
    chmod 644 "$out.tmp.$$"
    mv -f "$out.tmp.$$" "$out"
    log "wrote $out ($(stat -c %s "$out") bytes):"
    tshark -n -r "$out" -Y l2tp -T fields -E separator=' ' \
        -e frame.number -e ip.src -e l2tp.type -e l2tp.avp.message_type -e l2tp.avp.hidden >&2 2>/dev/null
}

if [[ ${1:-} == __inner ]]; then
    shift
    inner_main "$@"
else
    outer_main "$@"
fi
