"""cocotb testbench of the SQ writer (``nvmf_sq_writer``)."""
