#!/usr/bin/perl
# A minimal SMS centre for the wallet's SMPP tests (Debian libnet-smpp-perl, server mode).
#
#   smsc.pl OUTFILE SYSTEM_ID PASSWORD [PORT]
#
# Listens on 127.0.0.1 (on PORT, or a free port) and prints "listening PORT" on stdout. Serves one ESME
# connection at a time: bind_transmitter (checks system_id and password: ESME_RINVPASWD 0x0E
# otherwise), submit_sm (answers a message id and appends "DESTINATION<TAB>TEXT" to OUTFILE),
# enquire_link, unbind. Anything else gets generic_nack with ESME_RINVCMDID.
use strict;
use warnings;
use Net::SMPP;
use IO::Handle;

my ($outfile, $sysid, $password, $port) = @ARGV;
die "usage: smsc.pl OUTFILE SYSTEM_ID PASSWORD [PORT]\n" unless defined $password;

my $listen = Net::SMPP->new_listen('127.0.0.1', port => $port // 0, smpp_version => 0x34)
    or die "cannot listen: $!\n";
STDOUT->autoflush(1);
print "listening ", $listen->sockport, "\n";

my $next_id = 1;
while (my $esme = $listen->accept) {
    my $bound = 0;
    while (my $pdu = $esme->read_pdu) {
        my $cmd = $pdu->{cmd};
        if ($cmd == 0x00000002) {    # bind_transmitter
            my $ok = ($pdu->{system_id} // '') eq $sysid && ($pdu->{password} // '') eq $password;
            $esme->bind_transmitter_resp(system_id => 'TESTSMSC', seq => $pdu->{seq},
                                         status => $ok ? 0 : 0x0E);
            $bound = $ok;
        } elsif ($cmd == 0x00000004) {    # submit_sm
            if (!$bound) {
                $esme->submit_sm_resp(message_id => '', seq => $pdu->{seq}, status => 0x04);
                next;
            }
            open(my $fh, '>>', $outfile) or die "cannot append to $outfile: $!\n";
            print $fh $pdu->{destination_addr}, "\t", $pdu->{short_message}, "\n";
            close $fh;
            $esme->submit_sm_resp(message_id => sprintf('msg%06d', $next_id++), seq => $pdu->{seq});
        } elsif ($cmd == 0x00000015) {    # enquire_link
            $esme->enquire_link_resp(seq => $pdu->{seq});
        } elsif ($cmd == 0x00000006) {    # unbind
            $esme->unbind_resp(seq => $pdu->{seq});
            last;
        } else {
            $esme->generic_nack(seq => $pdu->{seq}, status => 0x03);
        }
    }
    $esme->close;
}
