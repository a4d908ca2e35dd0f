#!/bin/busybox sh
# /init of the test rig's initramfs (packed by test/guest/initramfs.ts with busybox-static).
# It mounts the host's root read-only (9p tag hostroot) at /host, the project folder
# writable (tag project) at its host path inside it, the usual kernel filesystems, then
# runs the command from the per-run exchange folder (tag rigio) as root in a chroot, and
# writes the command's stdout, stderr and exit status back to that folder. Lines starting
# with RIG- on the console mark the stages for the host and for whoever reads a failure.
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
	echo "RIG-ERROR: $*"
	poweroff -f
}

mount -t proc proc /proc || fail "mounting /proc"
mount -t sysfs sysfs /sys || fail "mounting /sys"
mount -t devtmpfs devtmpfs /dev || fail "mounting /dev"
echo "RIG-INIT uptime=$(cut -d' ' -f1 /proc/uptime)"

p9='trans=virtio,version=9p2000.L,msize=262144'
mount -t 9p -o "$p9" rigio /rigio || fail "mounting the exchange folder (9p tag rigio)"
project=$(cat /rigio/project) || fail "reading /rigio/project"
command=$(cat /rigio/command) || fail "reading /rigio/command"
# The host's root does not change during a run, so its pages may be cached.
mount -t 9p -o "$p9,ro,cache=loose" hostroot /host || fail "mounting the host's root (9p tag hostroot)"
mount -t proc proc /host/proc || fail "mounting /host/proc"
mount -t sysfs sysfs /host/sys || fail "mounting /host/sys"
mount -t devtmpfs devtmpfs /host/dev || fail "mounting /host/dev"
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts devpts /host/dev/pts || fail "mounting /host/dev/pts"
mount -t tmpfs tmpfs /host/dev/shm || fail "mounting /host/dev/shm"
# The host's /tmp and /run are hidden: the guest's programs write there.
mount -t tmpfs tmpfs /host/tmp || fail "mounting /host/tmp"
mount -t tmpfs tmpfs /host/run || fail "mounting /host/run"
# After those tmpfs mounts, so a project folder under /tmp (a CI clone, say) stays visible.
mkdir -p "/host$project" || fail "creating the mount point $project"
mount -t 9p -o "$p9" project "/host$project" || fail "mounting the project folder at $project (9p tag project)"
mount -t tracefs tracefs /host/sys/kernel/tracing || fail "mounting tracefs"
mount -t debugfs debugfs /host/sys/kernel/debug || fail "mounting debugfs"
mount -t cgroup2 cgroup2 /host/sys/fs/cgroup || fail "mounting cgroup2"

# Swap on zram (CONFIG_ZRAM in kernel.config), so that reclaim (DAMOS pageout,
# MADV_PAGEOUT) has somewhere to put anonymous pages. Sized as the guest's memory: zram
# only holds what is swapped out, compressed. A kernel without zram runs without swap.
if [ -e /sys/block/zram0/disksize ]; then
	mem_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
	echo "${mem_kib}K" >/sys/block/zram0/disksize || fail "sizing the zram swap device"
	mkswap /dev/zram0 >/dev/null || fail "mkswap /dev/zram0"
	swapon /dev/zram0 || fail "swapon /dev/zram0"
	echo "RIG-SWAP zram0 ${mem_kib}kB"
else
	echo "RIG-SWAP none: the kernel has no zram"
fi

echo "RIG-READY uptime=$(cut -d' ' -f1 /proc/uptime)"
/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	/bin/chroot /host /bin/sh -c "$command" </dev/null >/rigio/stdout 2>/rigio/stderr
status=$?
echo "$status" >/rigio/status
sync
echo "RIG-EXIT status=$status uptime=$(cut -d' ' -f1 /proc/uptime)"
umount /host/proc /rigio 2>/dev/null
poweroff -f
