<?php
// memory.sh: glibc's own account of this worker's malloc heap (all arenas, mallinfo2() through
// FFI): bytes in use and bytes free but kept; ?trim=1 first calls malloc_trim(0), which hands
// free pages back to the kernel.
$libc = FFI::cdef('struct mi { size_t arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost; };
    struct mi mallinfo2(void); int malloc_trim(size_t pad);', 'libc.so.6');
if (isset($_GET['trim'])) $libc->malloc_trim(0);
$m = $libc->mallinfo2();
echo json_encode(['in_use' => $m->uordblks + $m->hblkhd, 'free_kept' => $m->fordblks, 'mmapped' => $m->hblkhd]), "\n";
