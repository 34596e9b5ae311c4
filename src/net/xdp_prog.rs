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
//!
//! It is attached through a BPF link (`bpf_link_create`, `BPF_XDP`), not
//! by netlink, and the link is the test of what is ours: the kernel refuses
//! to create it while any program is attached to the interface (it never
//! replaces someone else's: an exchange or load generator on another queue
//! of the NIC, or another tool's), lets no one else replace or remove a
//! program a link holds (netlink answers EBUSY, even with `-force`), and
//! detaches exactly that program when the link's descriptor closes:
//! dropping [`XdpProgram`], or the kernel itself when the process dies, so a
//! killed exchange leaves nothing attached for its restart to replace. A
//! program found on the interface is named in the error by id and by its
//! kernel name: `tokex_xdp` is tokex's (another live tokex process's, or
//! one a tokex from before links left behind), anything else is foreign.
//! Either is left in place; the exchange then falls back to kernel UDP.
//!
//! With `src/net/xdp.rs` and `src/journal/mapped.rs` the only place in tokex
//! with `unsafe`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
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
    #[error("{}", occupied(.interface, .id, .name))]
    Occupied {
        interface: String,
        id: u32,
        name: String,
    },
    #[error("updating the {map} map: {err}")]
    Map { map: &'static str, err: io::Error },
}

/// The kernel name of tokex's program (`bpf_prog_info.name`: the C
/// function's name, cut to 15 bytes).
const PROGRAM_NAME: &str = "tokex_xdp";

fn occupied(interface: &str, id: &u32, name: &str) -> String {
    if name == PROGRAM_NAME {
        format!("{interface} already has tokex's XDP program (id {id}), held by another tokex process on this interface (another queue), or left by a tokex that attached without a link (`ip link set dev {interface} xdp off` removes it then): left in place")
    } else {
        format!(
            "{interface} already has XDP program id {id} ({name:?}), not tokex's: left in place"
        )
    }
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
    interface: String,
    ifindex: i32,
    mode: AttachMode,
    /// The link holding the program on the interface, once attached.
    link: Option<OwnedFd>,
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
            interface: interface.into(),
            ifindex,
            mode: AttachMode::Generic,
            link: None,
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
    /// `mode` is `Auto`, generic if the driver refuses. Fails, touching
    /// nothing, if a program is attached there already (module docs).
    pub fn attach(&mut self, mode: XdpMode) -> Result<(), XdpProgError> {
        let prog_fd = self.program_fd()?;
        self.check_free()?;
        let modes: &[AttachMode] = match mode {
            XdpMode::Auto => &[AttachMode::Native, AttachMode::Generic],
            XdpMode::Native => &[AttachMode::Native],
            XdpMode::Generic => &[AttachMode::Generic],
        };
        let mut last = None;
        for &m in modes {
            let opts = bpf::bpf_link_create_opts {
                sz: size_of::<bpf::bpf_link_create_opts>() as _,
                flags: m.flags(),
                ..Default::default()
            };
            // SAFETY: valid program fd and interface index (an XDP link's
            // target); `opts` is sized and zero beyond the mode flags.
            let fd = unsafe { bpf::bpf_link_create(prog_fd, self.ifindex, bpf::BPF_XDP, &opts) };
            if fd >= 0 {
                // SAFETY: `fd` is the new link's descriptor, owned by nothing else.
                self.link = Some(unsafe { OwnedFd::from_raw_fd(fd) });
                self.mode = m;
                return Ok(());
            }
            // A program attached since the check makes the kernel refuse
            // (EBUSY, or EEXIST in the other mode): say whose.
            self.check_free()?;
            last = Some(XdpProgError::Attach {
                mode: m.name(),
                err: errno(fd),
            });
        }
        Err(last.expect("at least one mode was tried"))
    }

    /// Ok if no program is attached to the interface in native or generic
    /// mode; otherwise which one is.
    fn check_free(&self) -> Result<(), XdpProgError> {
        let mut query = bpf::bpf_xdp_query_opts {
            sz: size_of::<bpf::bpf_xdp_query_opts>() as _,
            ..Default::default()
        };
        // SAFETY: valid interface index; `query` is sized and writable.
        let ret = unsafe { bpf::bpf_xdp_query(self.ifindex, 0, &mut query) };
        // A failed query says nothing: the attach that follows is refused
        // by the kernel anyway if the interface is taken.
        if ret != 0 {
            return Ok(());
        }
        match [query.drv_prog_id, query.skb_prog_id]
            .into_iter()
            .find(|&id| id != 0)
        {
            None => Ok(()),
            Some(id) => Err(XdpProgError::Occupied {
                interface: self.interface.clone(),
                id,
                name: program_name(id),
            }),
        }
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

/// The kernel name of the loaded program `id` (empty if it cannot be read).
fn program_name(id: u32) -> String {
    // SAFETY: a plain syscall; a negative return is an error.
    let fd = unsafe { bpf::bpf_prog_get_fd_by_id(id) };
    if fd < 0 {
        return String::new();
    }
    // SAFETY: `fd` was just returned for this call alone; closed on drop.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut info = bpf::bpf_prog_info::default();
    let mut len = size_of::<bpf::bpf_prog_info>() as u32;
    // SAFETY: `info` is `len` bytes and zeroed: the kernel fills what fits
    // and follows no pointer field (all null, with their counts 0).
    let ret = unsafe { bpf::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if ret != 0 {
        return String::new();
    }
    let name: Vec<u8> = info
        .name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&name).into_owned()
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
        // Closing the link detaches the program it holds, ours: nothing
        // else can have replaced it while the link existed.
        self.link = None;
        // SAFETY: the object was opened by `load` and is closed exactly
        // once, here.
        unsafe { bpf::bpf_object__close(self.obj.as_ptr()) };
    }
}
