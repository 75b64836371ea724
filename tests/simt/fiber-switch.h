/* fiber-switch.h: the SIMT emulator's fibers (simt.cc): a stack per emulated GPU thread and a
 * switch between them. On x86-64 the switch saves the callee-saved registers on the stack and
 * swaps stack pointers (a few nanoseconds: the emulator switches at every collective of every
 * thread); the SSE and x87 control words are not switched, as no kernel changes its rounding
 * mode; elsewhere ucontext's swapcontext does it (a system call
 * per switch, correct but slower). Under AddressSanitizer every switch is announced to it, so
 * that it tracks which stack is live. */
#ifndef SAM2_SIMT_FIBER_SWITCH_H
#define SAM2_SIMT_FIBER_SWITCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define SAM2_SIMT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SAM2_SIMT_ASAN 1
#endif
#endif
#ifdef SAM2_SIMT_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

namespace sam2_simt {

struct Fiber {
#if defined(__x86_64__)
  void *sp;              /* saved stack pointer while switched out */
#else
  ucontext_t ctx;
#endif
  void *stack;           /* NULL for the scheduler's own (the thread's) stack */
  size_t stack_bytes;
  void (*entry) ();
  void *asan_fake_stack;  /* AddressSanitizer's record of this context while switched out */
};

#if defined(__x86_64__)
/* sam2_simt_switch (&from->sp, to->sp): pushes rbp, rbx, r12-r15, stores rsp into *from_sp,
 * loads to_sp, pops the same and returns on the other stack. */
extern "C" void sam2_simt_switch (void **from_sp, void *to_sp);
__asm__ (".text\n"
         ".globl sam2_simt_switch\n"
         ".type sam2_simt_switch, @function\n"
         "sam2_simt_switch:\n"
         "  pushq %rbp\n"
         "  pushq %rbx\n"
         "  pushq %r12\n"
         "  pushq %r13\n"
         "  pushq %r14\n"
         "  pushq %r15\n"
         "  movq %rsp, (%rdi)\n"
         "  movq %rsi, %rsp\n"
         "  popq %r15\n"
         "  popq %r14\n"
         "  popq %r13\n"
         "  popq %r12\n"
         "  popq %rbx\n"
         "  popq %rbp\n"
         "  ret\n"
         ".size sam2_simt_switch, .-sam2_simt_switch\n"
         ".section .note.GNU-stack,\"\",@progbits\n"
         ".text\n");
#endif

inline Fiber *&
fiber_starting ()
{
  static Fiber *f;
  return f;
}

#ifdef SAM2_SIMT_ASAN
/* The scheduler's own stack, as ASan reports it when the first fiber starts (from the
 * scheduler). */
struct AsanStack {
  const void *bottom;
  size_t size;
};
inline AsanStack &
asan_main_stack ()
{
  static AsanStack s;
  return s;
}
#endif

/* Where a new fiber begins: ASan learns that the switch ended, then the fiber's entry runs
 * (it never returns: a fiber only switches away). */
inline void
fiber_trampoline ()
{
#ifdef SAM2_SIMT_ASAN
  /* the stack switched from: the scheduler's for the first fiber ever started (later fibers may
   * start from another fiber, whose stack is not the one to remember) */
  const void *bottom = nullptr;
  size_t size = 0;
  __sanitizer_finish_switch_fiber (nullptr, &bottom, &size);
  if (asan_main_stack ().bottom == nullptr)
    asan_main_stack () = { bottom, size };
#endif
  fiber_starting ()->entry ();
  abort ();
}

/* A stack with an inaccessible page below it: a fiber that overflows its stack faults there
 * instead of overwriting memory. */
inline Fiber *
fiber_new (size_t stack_bytes, void (*entry) ())
{
  const size_t page = (size_t) sysconf (_SC_PAGESIZE);
  Fiber *f = static_cast<Fiber *> (calloc (1, sizeof (Fiber)));
  if (f == nullptr)
    abort ();
  void *m = mmap (nullptr, stack_bytes + page, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED || mprotect (m, page, PROT_NONE) != 0)
    abort ();
  f->stack = static_cast<char *> (m) + page;
  f->stack_bytes = stack_bytes;
  f->entry = entry;
#if defined(__x86_64__)
  /* The first switch in pops the saved words below and returns into the trampoline with the
   * stack as a call would leave it (rsp + 8 a multiple of 16). */
  uintptr_t top = ((uintptr_t) f->stack + stack_bytes) & ~(uintptr_t) 15;
  uint64_t *sp = reinterpret_cast<uint64_t *> (top);
  *--sp = 0;                                           /* the trampoline's return address */
  *--sp = (uint64_t) (uintptr_t) &fiber_trampoline;    /* where the switch's ret goes */
  for (int i = 0; i < 6; i++)
    *--sp = 0;                                         /* rbp, rbx, r12-r15 */
  f->sp = sp;
#else
  getcontext (&f->ctx);
  f->ctx.uc_stack.ss_sp = f->stack;
  f->ctx.uc_stack.ss_size = stack_bytes;
  f->ctx.uc_link = nullptr;
  makecontext (&f->ctx, fiber_trampoline, 0);
#endif
  return f;
}

inline void
fiber_free (Fiber *f)
{
  const size_t page = (size_t) sysconf (_SC_PAGESIZE);
  munmap (static_cast<char *> (f->stack) - page, f->stack_bytes + page);
  free (f);
}

/* Suspends `from` (the running context) and resumes `to`. */
inline void
fiber_switch (Fiber *from, Fiber *to)
{
  fiber_starting () = to;
#ifdef SAM2_SIMT_ASAN
  if (to->stack != nullptr)
    __sanitizer_start_switch_fiber (&from->asan_fake_stack, to->stack, to->stack_bytes);
  else
    __sanitizer_start_switch_fiber (&from->asan_fake_stack, asan_main_stack ().bottom,
                                    asan_main_stack ().size);
#endif
#if defined(__x86_64__)
  sam2_simt_switch (&from->sp, to->sp);
#else
  swapcontext (&from->ctx, &to->ctx);
#endif
#ifdef SAM2_SIMT_ASAN
  __sanitizer_finish_switch_fiber (from->asan_fake_stack, nullptr, nullptr);
#endif
}

}  // namespace sam2_simt

#endif
