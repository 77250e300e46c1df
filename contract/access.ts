// Register values and access faults as every layer names them: the contract's facts and CPU
// models are built from them, and the guest's Platform (guest/platform.ts) returns them.

/** The four 32-bit registers CPUID returns, as unsigned Numbers. */
export interface CpuidRegs { eax: number; ebx: number; ecx: number; edx: number }

/**
 * Why an access did not produce a value. `errno` is the Linux name the msr/cpuid
 * drivers would give (EIO = the instruction faulted with #GP, ENOENT = no driver,
 * ENXIO = no such CPU, EACCES/EPERM = not permitted); platforms that are not
 * devcpu use the same names for the same meaning so callers need one mapping.
 */
export interface AccessFault { errno: string; message: string }
