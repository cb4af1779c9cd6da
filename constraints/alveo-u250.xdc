# Timing constraints of nvmf_engine on an AMD Alveo U250 (xcu250-figd2104-2L-e),
# for an out-of-context (OOC) run with nvmf_engine as the top (docs/fpga.md).
#
# Clock. The engine has one clock port, `clk`, and no clock of its own: the shell
# that hosts it (an XDMA/QDMA PCIe shell) drives `clk` with its user clock. Here
# that clock is the shell's 250 MHz AXI clock (the axi_aclk of an XDMA Gen3 x16
# shell), constrained on the port. For a 300 MHz user clock, use -period 3.333.
# Every other engine port is synchronous to `clk` (rising edge), `rst` included
# (a synchronous, active-high reset).
create_clock -name core_clk -period 4.000 [get_ports clk]

# I/O timing. In the shell, every engine port connects to logic clocked by the
# same clock, normally a register nearby (an AXI register slice, a FIFO, the DMA
# engine). The delays below budget 1.0 ns of each 4.0 ns cycle for the shell's
# side (its clock-to-out or setup plus the route to the engine's edge) and leave
# 3.0 ns to the engine. Min delays of 0 check hold against a register on the
# shell side. Tighten or relax to match the shell's register stages.
set core_inputs [get_ports -filter {DIRECTION == IN && NAME != clk}]
set core_outputs [get_ports -filter {DIRECTION == OUT}]
set_input_delay  -clock core_clk -max 1.000 $core_inputs
set_input_delay  -clock core_clk -min 0.000 $core_inputs
set_output_delay -clock core_clk -max 1.000 $core_outputs
set_output_delay -clock core_clk -min 0.000 $core_outputs

# The AXI4-Lite control port (s_axil_csr_*) is synchronous to `clk` inside the
# engine and is constrained above like every other port: it is NOT a false path.
# A shell whose control bus runs on another clock (for example a 50 MHz
# management clock) must put an AXI clock converter in front of s_axil_csr_*;
# the converter's own constraints then cover the crossing, and nothing here
# changes.
#
# `irq` is a level, combinational from engine registers (IRQ_ENABLE and the
# event queue's not-empty), constrained above for a shell that registers it on
# `clk`. A shell that uses it on another clock registers it on `clk` first, then
# synchronises that register's output (two flip-flops) in the other domain.
