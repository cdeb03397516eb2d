//! Records through their life: allocated, persisted, attached, checked,
//! detached, attached elsewhere.

use core::net::SocketAddrV4;

use weft_netstack::flow::TcpFlags;
use weft_netstack::id::Generator;
use weft_netstack::packet;
use weft_netstack::record::{Record, Status};
use weft_netstack::router::{Config, DropReason};
use weft_netstack::secgroup::{Peer, Rule};
use weft_netstack::subnet::{Allocator, Subnet};

use crate::support::{Net, at, ip, secs, tcp_rule};

#[test]
fn source_check_on_and_off() {
    let mut net = Net::new(Config::default());
    let open = net.group("open", &[Rule::all(Peer::Any)]);
    let mut appliance = net.attach("inst-a", &[open]);
    let server = net.attach("inst-b", &[open]);
    let foreign = SocketAddrV4::new(ip("198.51.100.7"), 5000);
    let spoofed = packet::udp(foreign, at(&server, 53), b"q");
    let neighbour = packet::udp(
        SocketAddrV4::new(server.primary_ip(), 5000),
        at(&server, 53),
        b"q",
    );

    // On (the default): neither a foreign nor a neighbour's source passes.
    assert!(appliance.source_dest_check());
    assert_eq!(
        net.send(secs(0), appliance.id(), &spoofed),
        Err(DropReason::SourceCheck)
    );
    assert_eq!(
        net.send(secs(0), appliance.id(), &neighbour),
        Err(DropReason::SourceCheck)
    );
    // Its own addresses, secondaries included, pass.
    let secondary = net.addresses.allocate().unwrap();
    appliance.add_secondary_ip(secondary).unwrap();
    net.router.update(&appliance).unwrap();
    let own = packet::udp(SocketAddrV4::new(secondary, 5000), at(&server, 53), b"q");
    assert_eq!(net.send(secs(0), appliance.id(), &own), Ok(server.id()));
    // And the secondary receives.
    let to_secondary = packet::udp(at(&server, 53), SocketAddrV4::new(secondary, 6000), b"a");
    assert_eq!(
        net.send(secs(0), server.id(), &to_secondary),
        Ok(appliance.id())
    );

    // Off: any source passes, and the answers to it are routed back by the
    // appliance's route for the outside block.
    appliance.set_source_dest_check(false);
    net.router.update(&appliance).unwrap();
    assert_eq!(net.send(secs(1), appliance.id(), &spoofed), Ok(server.id()));
    let answer = packet::udp(at(&server, 53), foreign, b"a");
    assert_eq!(
        net.send(secs(1), server.id(), &answer),
        Err(DropReason::NoRoute)
    );
    net.router
        .set_route("198.51.100.0/24".parse().unwrap(), appliance.id())
        .unwrap();
    assert_eq!(net.send(secs(1), server.id(), &answer), Ok(appliance.id()));

    // On again: the check applies at once, to the next packet.
    appliance.set_source_dest_check(true);
    net.router.update(&appliance).unwrap();
    assert_eq!(
        net.send(secs(2), appliance.id(), &spoofed),
        Err(DropReason::SourceCheck)
    );
    assert_eq!(
        net.send(secs(2), server.id(), &answer),
        Err(DropReason::DestinationCheck)
    );

    let counters = net.router.counters(appliance.id()).unwrap();
    assert_eq!(counters.drops(DropReason::SourceCheck), 3);
    assert_eq!(counters.drops(DropReason::DestinationCheck), 1);
    assert_eq!(
        net.router
            .counters(server.id())
            .unwrap()
            .drops(DropReason::NoRoute),
        1
    );
}

#[test]
fn detach_drops_and_reattach_delivers_to_the_new_instance() {
    let mut net = Net::new(Config::default());
    let web = net.group("web", &[tcp_rule("80")]);
    let open = net.group("open", &[Rule::all(Peer::Any)]);
    let client = net.attach("inst-client", &[open]);
    let mut server = net.attach("inst-a", &[web]);
    let syn = packet::tcp(at(&client, 40000), at(&server, 80), TcpFlags::SYN, b"");
    assert_eq!(net.send(secs(0), client.id(), &syn), Ok(server.id()));
    // The server opens a connection of its own to the client; the client's
    // answers pass the server's ingress only because the flow is tracked.
    let out = packet::tcp(at(&server, 7000), at(&client, 9000), TcpFlags::SYN, b"");
    assert_eq!(net.send(secs(0), server.id(), &out), Ok(client.id()));
    let answer = packet::tcp(at(&client, 9000), at(&server, 7000), TcpFlags::SYN_ACK, b"");
    assert_eq!(net.send(secs(0), client.id(), &answer), Ok(server.id()));

    // Detach: the record is stored (as the host would) and its address is
    // unreachable; the sender's port counts the drops.
    net.router.detach(server.id()).unwrap();
    assert_eq!(server.detach().unwrap().instance, "inst-a");
    let stored = serde_json::to_string(&server).unwrap();
    assert_eq!(
        net.send(secs(1), client.id(), &syn),
        Err(DropReason::NoRoute)
    );
    assert_eq!(
        net.send(secs(1), client.id(), &answer),
        Err(DropReason::NoRoute)
    );
    assert_eq!(
        net.router
            .counters(client.id())
            .unwrap()
            .drops(DropReason::NoRoute),
        2
    );
    assert!(net.router.port_of(server.primary_ip()).is_none());

    // Attach the stored record to another instance: same id, MAC and address,
    // and packets reach it again.
    let mut moved: Record = serde_json::from_str(&stored).unwrap();
    assert_eq!(moved.status(), Status::Available);
    moved.attach("inst-b", 1_000).unwrap();
    net.router.attach(&moved).unwrap();
    assert_eq!((moved.id(), moved.mac()), (server.id(), server.mac()));
    assert_eq!(net.send(secs(2), client.id(), &syn), Ok(moved.id()));
    assert_eq!(moved.attachment().unwrap().instance, "inst-b");
    let syn_ack = packet::tcp(at(&moved, 80), at(&client, 40000), TcpFlags::SYN_ACK, b"");
    assert_eq!(net.send(secs(2), moved.id(), &syn_ack), Ok(client.id()));

    // The old instance's flows ended with its attachment: the same answer is
    // judged afresh at the new one, whose rules allow only port 80.
    assert_eq!(
        net.send(secs(2), client.id(), &answer),
        Err(DropReason::IngressDenied)
    );
    let counters = net.router.counters(moved.id()).unwrap();
    assert_eq!(
        (counters.rx_packets, counters.tx_packets),
        (1, 1),
        "fresh counters"
    );
    assert_eq!(counters.drops(DropReason::IngressDenied), 1);
}

#[test]
fn an_instance_with_records_in_two_subnets() {
    // One instance can hold a record in each of several subnets; each is
    // its own port with its own address and groups.
    let mut net = Net::new(Config::default());
    let open = net.group("open", &[Rule::all(Peer::Any)]);
    let front = net.attach("inst-a", &[open]);

    let mut ids = Generator::from_seed(0x900);
    let back_subnet = Subnet::new(ids.next_id(), "10.0.2.0/24".parse().unwrap(), "back").unwrap();
    let mut back_addresses = Allocator::new(&back_subnet);
    let mut in_back = |instance: Option<&str>| {
        let address = back_addresses.allocate().unwrap();
        let mut record = Record::new(ids.next_id(), back_subnet.id(), address);
        record.set_security_groups(vec![open]).unwrap();
        if let Some(instance) = instance {
            record.attach(instance, 0).unwrap();
        }
        net.router.attach(&record).unwrap();
        record
    };
    let back = in_back(Some("inst-a"));
    let db = in_back(None);
    assert_eq!(back.primary_ip(), ip("10.0.2.2"));
    assert_eq!(db.primary_ip(), ip("10.0.2.3"));

    let query = packet::tcp(at(&back, 40000), at(&db, 5432), TcpFlags::SYN, b"");
    assert_eq!(net.send(secs(0), back.id(), &query), Ok(db.id()));
    let answer = packet::tcp(at(&db, 5432), at(&front, 40000), TcpFlags::SYN, b"");
    assert_eq!(net.send(secs(0), db.id(), &answer), Ok(front.id()));
    // The front record cannot use the back record's address.
    assert_eq!(
        net.send(secs(0), front.id(), &query),
        Err(DropReason::SourceCheck)
    );
}
