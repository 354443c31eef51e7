from .cli import main
from .errors import exit_now

exit_now(main())
