<?php
// memory.sh: a request that does not touch evlog.
echo "ok\n";
