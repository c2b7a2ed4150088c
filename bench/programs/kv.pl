# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/allocators.py's perl workload: a key-value cache in a hash.
# 800,000 string values of 40..240 bytes under string keys, a quarter of them
# deleted and 200,000 new ones stored (perl on Debian uses glibc's malloc for
# every one), then every pair hashed in key order. Prints the SHA-256 and its
# own run time, then tells the runner it holds its memory ($HP_BENCH_LOADED
# gets its pid) and waits for $HP_BENCH_GO.
use strict;
use warnings;
use Digest::SHA;
use Time::HiRes qw(time sleep);

my $n = $ARGV[0] // 800_000;
my $t0 = time;
my %h;
for my $i (0 .. $n - 1) { $h{"key:$i"} = ("v" . ($i % 97)) x (20 + $i % 60); }
for my $i (0 .. $n - 1) { delete $h{"key:$i"} if $i % 4 == 0; }
for my $i (0 .. $n - 1) { $h{"new:$i"} = ("w" . ($i % 89)) x (10 + $i % 50) if $i % 4 == 0; }
my $sha = Digest::SHA->new(256);
$sha->add($_, "=", $h{$_}, ";") for sort keys %h;
printf "digest=%s\nseconds=%.3f\n", $sha->hexdigest, time - $t0;
$| = 1;

my ($loaded, $go) = @ENV{qw(HP_BENCH_LOADED HP_BENCH_GO)};
if ($loaded && $go) {
    open my $f, ">", "$loaded.tmp" or die "$loaded.tmp: $!";
    print $f $$;
    close $f;
    rename "$loaded.tmp", $loaded or die "$loaded: $!";
    sleep 0.05 until -e $go;
}
