from .frontends.cli import main
from .core.errors import exit_now

exit_now(main())
