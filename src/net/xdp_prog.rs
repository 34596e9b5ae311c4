//! tokex's XDP program (bpf/tokex_xdp.c): loading it with libbpf,
//! attaching it to the exchange interface, and its maps.
//!
//! The program sends IPv4/UDP to the listed ports (the gateway port, or the
//! load generator's session ports) into the AF_XDP socket of the receive
//! queue and passes everything else to the kernel. libxdp's
//! default program would redirect *every* packet of the queue to the socket
//! (ARP included), so sockets are created with
//! `XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD` and inserted into this program's
//! XSKMAP instead. It is attached without a bpffs pin (no libxdp
//! dispatcher), so `ip netns exec`'s private mount view does not matter.
//! Dropping [`XdpProgram`] detaches it. If the process dies without
//! detaching, the map loses its socket with the process and order datagrams
//! fall through to the kernel (`XDP_PASS` is the redirect's default).
//!
//! With `src/net/xdp.rs` this is the only place in tokex with `unsafe`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::ptr::{self, NonNull};

use libbpf_sys as bpf;

use crate::config::XdpMode;

/// The compiled program (build.rs), 8-byte aligned for libelf.
#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);
static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/tokex_xdp.o")));

/// How the program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// In the generic network stack (`XDP_FLAGS_SKB_MODE`): works on any
    /// interface, slower.
    Generic,
}

impl AttachMode {
    pub const fn name(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic (SKB)",
        }
    }

    const fn flags(self) -> u32 {
        match self {
            AttachMode::Native => bpf::XDP_FLAGS_DRV_MODE,
            AttachMode::Generic => bpf::XDP_FLAGS_SKB_MODE,
        }
    }
}

/// Why the program could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum XdpProgError {
    #[error("no interface {0:?} in this network namespace")]
    NoInterface(String),
    #[error("loading the XDP program: {0}")]
    Load(io::Error),
    #[error("the XDP object has no {0:?}")]
    Missing(&'static str),
    #[error("attaching the XDP program in {mode} mode: {err}")]
    Attach { mode: &'static str, err: io::Error },
    #[error("updating the {map} map: {err}")]
    Map { map: &'static str, err: io::Error },
}

/// Packets the program has seen since it was attached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgCounters {
    /// Order datagrams redirected to the AF_XDP socket.
    pub redirected: u64,
    /// Everything passed to the kernel.
    pub passed: u64,
}

/// The loaded and attached program. Detached on drop.
pub struct XdpProgram {
    obj: NonNull<bpf::bpf_object>,
    ifindex: i32,
    mode: AttachMode,
    attached: bool,
    xsks: RawFd,
    stats: RawFd,
}

// SAFETY: the object is only touched through `&mut self`/`Drop` (and map
// syscalls on plain file descriptors), never from two threads at once.
unsafe impl Send for XdpProgram {}

fn errno(ret: i32) -> io::Error {
    io::Error::from_raw_os_error(ret.abs())
}

impl XdpProgram {
    /// Loads the program for `interface` and points it at the UDP `ports`
    /// of the address `local`; not attached yet ([`XdpProgram::attach`]),
    /// so its socket map can be filled first.
    pub fn load(
        interface: &str,
        local: std::net::Ipv4Addr,
        ports: &[u16],
    ) -> Result<XdpProgram, XdpProgError> {
        let name =
            CString::new(interface).map_err(|_| XdpProgError::NoInterface(interface.into()))?;
        // SAFETY: `name` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(XdpProgError::NoInterface(interface.into()));
        }
        let ifindex = ifindex as i32;

        // SAFETY: OBJECT is a static ELF image that outlives the object;
        // null options mean defaults.
        let raw = unsafe {
            bpf::bpf_object__open_mem(OBJECT.0.as_ptr().cast(), OBJECT.0.len() as _, ptr::null())
        };
        let obj =
            NonNull::new(raw).ok_or_else(|| XdpProgError::Load(io::Error::last_os_error()))?;
        // From here on `prog` owns the object: an early return closes it.
        let mut prog = XdpProgram {
            obj,
            ifindex,
            mode: AttachMode::Generic,
            attached: false,
            xsks: -1,
            stats: -1,
        };
        // SAFETY: `obj` is a valid, opened, not yet loaded object.
        let ret = unsafe { bpf::bpf_object__load(prog.obj.as_ptr()) };
        if ret != 0 {
            return Err(XdpProgError::Load(errno(ret)));
        }
        prog.xsks = prog.map_fd(c"tokex_xsks", "tokex_xsks")?;
        prog.stats = prog.map_fd(c"tokex_stats", "tokex_stats")?;
        let port_map = prog.map_fd(c"tokex_ports", "tokex_ports")?;
        for &port in ports {
            update(port_map, u32::from(port), &1, "tokex_ports")?;
        }
        let local_map = prog.map_fd(c"tokex_local", "tokex_local")?;
        // The address as it lies in the IPv4 header, read as a native u32.
        let address = u32::from_ne_bytes(local.octets());
        update(local_map, 0, &address, "tokex_local")?;
        Ok(prog)
    }

    /// Attaches the loaded program to its interface: native mode first when
    /// `mode` is `Auto`, generic if the driver refuses. A program already
    /// attached there is replaced: one a killed exchange left behind (a
    /// live exchange's socket keeps the queue, so a second one fails to
    /// bind its socket before it gets here).
    pub fn attach(&mut self, mode: XdpMode) -> Result<(), XdpProgError> {
        let prog_fd = self.program_fd()?;
        let modes: &[AttachMode] = match mode {
            XdpMode::Auto => &[AttachMode::Native, AttachMode::Generic],
            XdpMode::Native => &[AttachMode::Native],
            XdpMode::Generic => &[AttachMode::Generic],
        };
        let mut last = None;
        for &m in modes {
            // SAFETY: valid interface index and program fd; null options.
            // Without XDP_FLAGS_UPDATE_IF_NOEXIST this replaces a program
            // left behind by a killed exchange.
            let ret = unsafe { bpf::bpf_xdp_attach(self.ifindex, prog_fd, m.flags(), ptr::null()) };
            if ret == 0 {
                self.mode = m;
                self.attached = true;
                return Ok(());
            }
            last = Some(XdpProgError::Attach {
                mode: m.name(),
                err: errno(ret),
            });
        }
        Err(last.expect("at least one mode was tried"))
    }

    fn program_fd(&self) -> Result<RawFd, XdpProgError> {
        // SAFETY: the object is loaded; the name is NUL-terminated.
        let p = unsafe {
            bpf::bpf_object__find_program_by_name(self.obj.as_ptr(), c"tokex_xdp".as_ptr())
        };
        if p.is_null() {
            return Err(XdpProgError::Missing("tokex_xdp program"));
        }
        // SAFETY: `p` is a program of the loaded object.
        let fd = unsafe { bpf::bpf_program__fd(p) };
        if fd < 0 {
            return Err(XdpProgError::Missing("tokex_xdp program fd"));
        }
        Ok(fd)
    }

    fn map_fd(&self, name: &std::ffi::CStr, what: &'static str) -> Result<RawFd, XdpProgError> {
        // SAFETY: the object is loaded; the name is NUL-terminated.
        let fd = unsafe { bpf::bpf_object__find_map_fd_by_name(self.obj.as_ptr(), name.as_ptr()) };
        if fd < 0 {
            return Err(XdpProgError::Missing(what));
        }
        Ok(fd)
    }

    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    /// Sends the order datagrams arriving on `queue` to the AF_XDP socket
    /// `socket_fd`.
    pub fn insert_socket(&self, queue: u32, socket_fd: RawFd) -> Result<(), XdpProgError> {
        update(self.xsks, queue, &(socket_fd as u32), "tokex_xsks")
    }

    /// The program's counters, summed over CPUs.
    pub fn counters(&self) -> ProgCounters {
        // SAFETY: no arguments; reads /sys/devices/system/cpu/possible.
        let cpus = unsafe { bpf::libbpf_num_possible_cpus() };
        // A per-CPU map returns one value for every possible CPU, written
        // whole: without the count (no sysfs) no buffer is known to be
        // large enough, so nothing is read.
        let Some(cpus) = usize::try_from(cpus).ok().filter(|&n| n > 0) else {
            return ProgCounters::default();
        };
        let mut values = vec![0u64; cpus];
        let mut read = |slot: u32| -> u64 {
            values.fill(0);
            // SAFETY: `values` has room for one u64 per possible CPU;
            // the key is a valid u32.
            let ret = unsafe {
                bpf::bpf_map_lookup_elem(
                    self.stats,
                    (&slot as *const u32).cast(),
                    values.as_mut_ptr().cast(),
                )
            };
            if ret == 0 {
                values.iter().sum()
            } else {
                0
            }
        };
        ProgCounters {
            redirected: read(0),
            passed: read(1),
        }
    }
}

fn update(map: RawFd, key: u32, value: &u32, name: &'static str) -> Result<(), XdpProgError> {
    // SAFETY: key and value point to u32s, the sizes the map was declared with.
    let ret = unsafe {
        bpf::bpf_map_update_elem(
            map,
            (&key as *const u32).cast(),
            (value as *const u32).cast(),
            u64::from(bpf::BPF_ANY),
        )
    };
    if ret != 0 {
        return Err(XdpProgError::Map {
            map: name,
            err: errno(ret),
        });
    }
    Ok(())
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        // SAFETY: detaching by interface and mode; the object was opened
        // by `attach` and is closed exactly once, here.
        unsafe {
            if self.attached {
                bpf::bpf_xdp_detach(self.ifindex, self.mode.flags(), ptr::null());
            }
            bpf::bpf_object__close(self.obj.as_ptr());
        }
    }
}
