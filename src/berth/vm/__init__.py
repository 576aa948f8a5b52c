"""VM isolation: each container in its own small QEMU utility VM with its own kernel.

The pieces: `kernel` fetches Debian's 6.1 generic kernel and its 9p/virtio modules,
`cpio` and `initramfs` build the guest's initial root (the agent as /init),
`prepare` puts it all in a directory once, `boot` starts a VM (its QEMU argv from
`cmdline`, its monitor through `qmp`), `agentchannel` talks to the agent over
virtio-serial with the protocol in `berth.wire.agentproto`, and `template`
(`templatefiles`, `templatestore`, `templatebuild`) and `clones` keep saved
templates and start clones from them.
"""
